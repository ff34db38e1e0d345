"""The city's case categories: which (major, minor) code each violation is filed under.

Codes differ between cities, so both the code table (``event_codes.csv``) and the
mapping from event types to codes (``categories.yaml``) are files the city edits.
Everything is checked at load: a mapping that names a code the table lacks stops
the start with a message naming the file, the event type and the code, instead
of producing cases the platform refuses later.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from vision.events import EVENT_TYPES

MAJOR_CODE = re.compile(r"[0-9]{2,3}")
MINOR_CODE = re.compile(r"[0-9]{2,3}")  # newer schemas use 3-digit minor codes
CODE_PAIR = re.compile(r"([0-9]{2,3})/([0-9]{2,3})")
CODES_COLUMNS = ("major_code", "major_name", "minor_code", "minor_name")

# How the case platform names where a case came from (案件来源).
SOURCE_KIND_NAMES: dict[str, tuple[str, str]] = {
    "fixed": ("视频监控", "fixed camera"),
    "vehicle": ("车载视频", "patrol vehicle camera"),
    "drone": ("无人机", "drone"),
    "mobile": ("移动巡查", "mobile patrol"),
    "upload": ("上传视频", "uploaded footage"),
}


class TaxonomyError(ValueError):
    """The codes file or the category mapping is wrong, or a lookup names nothing known."""


@dataclass(frozen=True, slots=True)
class Category:
    major: str
    major_name: str
    minor: str
    minor_name: str

    @property
    def code(self) -> str:
        return f"{self.major}/{self.minor}"

    def __str__(self) -> str:
        return f"{self.major} {self.major_name} / {self.minor} {self.minor_name}"


@dataclass(frozen=True, slots=True)
class EventTypeMapping:
    default: Category
    by_label: dict[str, Category]
    name_zh: str
    name_en: str


def load_codes(path: str | Path) -> dict[tuple[str, str], Category]:
    """Read the code table; every value stays a string so ``05`` keeps its zero."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM Excel writes
    except FileNotFoundError:
        raise TaxonomyError(f"{path}: codes file not found") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in CODES_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise TaxonomyError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(CODES_COLUMNS)}")
    codes: dict[tuple[str, str], Category] = {}
    major_names: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        major, minor = (row["major_code"] or "").strip(), (row["minor_code"] or "").strip()
        major_name, minor_name = (row["major_name"] or "").strip(), (row["minor_name"] or "").strip()
        if not MAJOR_CODE.fullmatch(major):
            raise TaxonomyError(f"{path}:{line}: major_code {major!r} is not 2-3 digits")
        if not MINOR_CODE.fullmatch(minor):
            raise TaxonomyError(f"{path}:{line}: minor_code {minor!r} is not 2-3 digits")
        if not major_name or not minor_name:
            raise TaxonomyError(f"{path}:{line}: major_name and minor_name must not be empty")
        if major_names.setdefault(major, major_name) != major_name:
            raise TaxonomyError(
                f"{path}:{line}: major {major} is named {major_name!r} here but {major_names[major]!r} before"
            )
        if (major, minor) in codes:
            raise TaxonomyError(f"{path}:{line}: code {major}/{minor} appears twice")
        codes[(major, minor)] = Category(major, major_name, minor, minor_name)
    if not codes:
        raise TaxonomyError(f"{path}: no codes")
    return codes


class Taxonomy:
    def __init__(self, codes: dict[tuple[str, str], Category], mapping: dict[str, EventTypeMapping],
                 objects: dict[str, tuple[str, str]] | None = None):
        self._codes = codes
        self._mapping = mapping
        self._objects = objects or {}  # detector label -> (zh, en)

    @classmethod
    def load(cls, codes_path: str | Path, categories_path: str | Path) -> "Taxonomy":
        codes = load_codes(codes_path)
        path = Path(categories_path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaxonomyError(f"{path}: category mapping not found") from None
        except yaml.YAMLError as err:
            raise TaxonomyError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
        return cls(codes, parse_mapping(raw, codes, str(path)), parse_objects(raw, str(path)))

    def category(self, major: str, minor: str) -> Category:
        try:
            return self._codes[(str(major), str(minor))]
        except KeyError:
            raise TaxonomyError(f"no category {major}/{minor} in the codes file") from None

    def category_for(self, event_type: str, label: str | None = None) -> Category:
        mapping = self._event_type(event_type)
        return mapping.by_label.get(label or "", mapping.default)

    def categories(self) -> list[Category]:
        """Every category of the codes file, in code order (the choices for reclassification)."""
        return [self._codes[k] for k in sorted(self._codes)]

    def event_types(self) -> list[str]:
        return list(self._mapping)

    def event_name(self, event_type: str) -> tuple[str, str]:
        """(Chinese, English) name of an event type; the type itself when unknown."""
        m = self._mapping.get(event_type)
        return (m.name_zh, m.name_en) if m else (event_type, event_type.replace("_", " "))

    def picture_names(self) -> dict[str, str]:
        """Chinese names of the event types and the detector labels, for evidence pictures."""
        out = {label: zh for label, (zh, _en) in self._objects.items()}
        out.update({t: self.event_name(t)[0] for t in self._mapping})
        return out

    def object_name(self, label: str | None) -> tuple[str, str]:
        """(Chinese, English) name of a detector label; the label itself when the file has none."""
        label = label or ""
        return self._objects.get(label, (label, label.replace("_", " ")))

    def describe(self, event_type: str, source_kind: str, source_id: str, zone: str | None = None,
                 seen_by: tuple[str, str] | None = None) -> str:
        """The case's short bilingual description, e.g. for the platform's 问题描述 field.

        ``seen_by`` (Chinese, English) names what saw it instead of the source kind and
        id, e.g. an uploaded flight by its file, pilot and time."""
        mapping = self._event_type(event_type)
        kind_zh, kind_en = SOURCE_KIND_NAMES.get(source_kind, (source_kind, source_kind))
        who_zh, who_en = seen_by or (f"{kind_zh} {source_id}", f"{kind_en} {source_id}")
        zh = who_zh + (f"（{zone}）" if zone else "") + f"发现疑似{mapping.name_zh}"
        en = f"Suspected {mapping.name_en} seen by {who_en}" + (f" in zone {zone}" if zone else "")
        return f"{zh}。{en}."

    def _event_type(self, event_type: str) -> EventTypeMapping:
        try:
            return self._mapping[event_type]
        except KeyError:
            raise TaxonomyError(f"event type {event_type!r} has no category mapping") from None


def parse_objects(raw, origin: str) -> dict[str, tuple[str, str]]:
    """The optional ``objects`` section: detector label -> {zh, en}."""
    section = raw.get("objects") if isinstance(raw, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise TaxonomyError(f"{origin}: 'objects' must map detector labels to names like {{zh: 彩钢棚, en: steel shed}}")
    out = {}
    for label, name in section.items():
        if not isinstance(name, dict) or not name.get("zh"):
            raise TaxonomyError(f"{origin}: objects: {label!r} needs a name like {{zh: 彩钢棚, en: steel shed}}")
        out[str(label)] = (str(name["zh"]), str(name.get("en", str(label).replace("_", " "))))
    return out


def parse_mapping(raw, codes: dict[tuple[str, str], Category], origin: str) -> dict[str, EventTypeMapping]:
    if not isinstance(raw, dict) or not isinstance(raw.get("event_types"), dict):
        raise TaxonomyError(f"{origin}: expected a mapping with an 'event_types' section")

    def category(value, where: str) -> Category:
        # Codes must be written MAJOR/MINOR: a bare YAML number would lose its leading zero.
        if not isinstance(value, str):
            raise TaxonomyError(
                f"{origin}: {where}: expected a code pair like 05/01, got the {type(value).__name__} {value!r} "
                "(YAML reads bare digits as a number; write MAJOR/MINOR)"
            )
        m = CODE_PAIR.fullmatch(value)
        if not m:
            raise TaxonomyError(f"{origin}: {where}: expected a code pair like 05/01, got {value!r}")
        if (m[1], m[2]) not in codes:
            raise TaxonomyError(f"{origin}: {where}: code {value} is not in the codes file")
        return codes[(m[1], m[2])]

    mapping: dict[str, EventTypeMapping] = {}
    for event_type, entry in raw["event_types"].items():
        where = f"event type {event_type!r}"
        if event_type not in EVENT_TYPES:
            raise TaxonomyError(f"{origin}: {where} is unknown; known types are {', '.join(EVENT_TYPES)}")
        if not isinstance(entry, dict) or "category" not in entry:
            raise TaxonomyError(f"{origin}: {where}: needs a 'category: MAJOR/MINOR'")
        unknown = set(entry) - {"category", "labels", "name"}
        if unknown:
            raise TaxonomyError(f"{origin}: {where}: unknown key(s) {', '.join(sorted(unknown))}")
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise TaxonomyError(f"{origin}: {where}: 'labels' must map detector labels to code pairs")
        name = entry.get("name") or {}
        if not isinstance(name, dict):
            raise TaxonomyError(f"{origin}: {where}: 'name' must be a mapping like {{zh: 扬尘, en: dust}}")
        mapping[event_type] = EventTypeMapping(
            default=category(entry["category"], where),
            by_label={str(lab): category(code, f"{where}, label {lab!r}") for lab, code in labels.items()},
            name_zh=str(name.get("zh", event_type)),
            name_en=str(name.get("en", event_type.replace("_", " "))),
        )
    missing = [t for t in EVENT_TYPES if t not in mapping]
    if missing:
        raise TaxonomyError(f"{origin}: no category for event type(s) {', '.join(missing)}")
    return mapping
