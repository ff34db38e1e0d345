"""Settings: one YAML file plus environment variables, read once and passed down.

Precedence (highest first): environment (``PATROL_*``, ``REDIS_URL``,
``DATABASE_URL``), the YAML file (``--config`` or ``PATROL_CONFIG``), defaults.
Nested keys take ``__`` in the environment: ``PATROL_MODEL__IMGSZ=416``.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streams.sources import ConfigError, read_yaml

ROOT = Path(__file__).resolve().parents[1]


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: Path = ROOT / "models" / "patrol-v1.pt"
    imgsz: int = Field(256, ge=64, le=1920, multiple_of=32)
    conf: float = Field(0.25, gt=0, lt=1)
    device: str = "cpu"
    batch: int = Field(16, ge=1, le=256)


class CaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codes_file: Path = ROOT / "config" / "event_codes.csv"
    categories_file: Path = ROOT / "config" / "categories.yaml"
    grid_file: Path | None = ROOT / "config" / "grid.geojson"
    cooldown_s: float = Field(300.0, ge=0)
    merge_radius_m: float = Field(30.0, ge=0)
    case_prefix: str = "CP"


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_hours: float = Field(12.0, gt=0, le=24 * 90)  # a login lasts this long, then log in again
    # `patrol demo` only: the password of its first users (else a random one, printed once)
    demo_password: str | None = Field(None, min_length=8)


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_max_side: int = Field(640, ge=64, le=4096)
    open_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    stall_timeout_s: float = Field(10.0, gt=0)
    loop_files: bool = False  # replay file sources forever (demo and simulation)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATROL_", env_nested_delimiter="__", extra="forbid")

    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "PATROL_REDIS_URL"))
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "PATROL_DATABASE_URL"))
    data_dir: Path = ROOT / "var"
    sources: Path = ROOT / "config" / "demo_sources.yaml"
    model: ModelSettings = ModelSettings()
    cases: CaseSettings = CaseSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    auth: AuthSettings = AuthSettings()
    rules: dict[str, dict] = Field(default_factory=dict, description="per event type overrides of vision.rules")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return env_settings, init_settings  # the YAML file arrives as init kwargs; the environment wins

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'patrol.db'}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"


PATH_KEYS = {(): ("sources", "data_dir"), ("model",): ("weights",),
             ("cases",): ("codes_file", "categories_file", "grid_file")}


def _resolve_paths(raw: dict, base: Path) -> None:
    """Relative paths in a settings file are relative to that file, not to the working directory."""
    for section, keys in PATH_KEYS.items():
        node = raw
        for name in section:
            node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for key in keys:
            value = node.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                node[key] = str((base / value).resolve())


def load_settings(path: str | Path | None = None, **overrides) -> Settings:
    """Read the YAML file (if any) and the environment; raise ConfigError on mistakes."""
    path = path or os.environ.get("PATROL_CONFIG")
    raw: dict = {}
    if path:
        p = Path(path)
        raw = read_yaml(p, "settings file") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of settings")
        _resolve_paths(raw, p.parent)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**raw)
    except ValidationError as err:
        msgs = "; ".join(f"{_where(e['loc'], raw)}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path or 'settings'}: {msgs}") from None


def _where(loc: tuple, raw: dict) -> str:
    """The dotted field, and the environment variable when the value came from there."""
    field = ".".join(str(x) for x in loc)
    node = raw
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    if node is None and loc:
        env = "PATROL_" + "__".join(str(x).upper() for x in loc)
        if env in os.environ:
            return f"{field} (from {env})"
    return field
