"""The upload area: recorded flights arriving in resumable chunks, checked before use.

A drone operator's link is slow and drops; a 2 GB flight must continue where it
stopped, not start again. So an upload is a set of *parts* (the video, and the
optional DJI ``.SRT``), each a file that grows only at its end: a chunk is
accepted only at the part's current size, and the current size is what a client
asks for after an interruption (the tus protocol's idea, in a few lines).

Every upload lives in a folder named by a server-made id under one root. The
client's file name is never part of a path: it is only checked and kept as
metadata. Paths are resolved and asserted to lie under the root.

When all bytes are there, ``verify`` checks size and SHA-256 against what the
client declared, and ``validate_video``/``validate_srt`` check that the bytes are
an H.264/H.265 MP4/MOV that decodes and telemetry that belongs to it. A refused
upload keeps its bytes for inspection.

A library: no HTTP, no database, no settings. Errors carry a one-line message
for a person and a ``kind`` the faces map to their own answers.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av

from streams.reader import SourceError, VideoInfo, open_container, probe
from streams.telemetry import TelemetryError, Track, parse_srt

GiB = 1 << 30
MiB = 1 << 20
PARTS = {"video": "video", "srt": "telemetry.srt"}  # part -> file name inside the upload's folder
EXTENSIONS = {"video": (".mp4", ".mov"), "srt": (".srt",)}
CODECS = {"h264": "H.264", "hevc": "H.265"}
MAX_NAME_CHARS = 255  # what every common file system allows for one name
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
SHA256 = re.compile(r"[0-9a-f]{64}")
HASH_BLOCK = 4 * MiB
SRT_TOLERANCE_S = 2.0  # a side-car may end up to this far from the video's end


class UploadError(ValueError):
    """An upload request that cannot be honoured; ``str()`` says why in one line.

    ``kind`` is what a face needs to answer: ``name`` (a refused file name),
    ``too_large``, ``offset`` (resume at ``offset``), ``busy`` (another request
    writes this part), ``integrity`` (size or hash differ from the declared),
    ``media`` (not a usable video or SRT), ``missing`` (no such upload),
    ``storage`` (the disk refused).
    """

    def __init__(self, message: str, kind: str = "bad", offset: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.offset = offset


# ---------------------------------------------------------------------------------- names


def clean_name(raw: str | bytes, part: str = "video") -> str:
    """The client's file name, checked, as it will be shown; UploadError if refused.

    Refused rather than repaired: names with folders (``../../x``, ``C:\\x``),
    control characters, bytes that are not UTF-8, more than 255 characters, or
    the wrong extension for the part. A silently changed name would hide a broken
    or hostile client, and a person can always rename the file.
    """
    if part not in PARTS:
        raise UploadError(f"unknown part {part!r}; one of {', '.join(PARTS)}", "name")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError("file name is not valid UTF-8; rename the file", "name") from None
    if not isinstance(raw, str):
        raise UploadError("file name must be text", "name")
    try:  # a str can still carry undecodable bytes as lone surrogates (surrogateescape)
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise UploadError("file name is not valid UTF-8; rename the file", "name") from None
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise UploadError("file name is empty", "name")
    if len(name) > MAX_NAME_CHARS:
        raise UploadError(f"file name is {len(name)} characters long; at most {MAX_NAME_CHARS}", "name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UploadError("file name contains control characters", "name")
    if "/" in name or "\\" in name or name in (".", "..") or ":" in name:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise UploadError(f"file name must be a plain name without folders, not {shown!r}", "name")
    if not name.lower().endswith(EXTENSIONS[part]):
        wanted = " or ".join(e.upper().lstrip(".") for e in EXTENSIONS[part])
        what = "video (H.264 or H.265)" if part == "video" else "DJI telemetry side-car"
        raise UploadError(f"{name}: a {what} must be an {wanted} file", "name")
    return name


def check_sha256(value: str) -> str:
    value = (value or "").strip().lower()
    if not SHA256.fullmatch(value):
        raise UploadError("sha256 must be 64 hexadecimal digits (the SHA-256 of the whole file)", "bad")
    return value


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- area


@dataclass(frozen=True)
class ChunkResult:
    offset: int  # the part's size after this chunk
    written: int  # bytes this request added
    complete: bool  # the part has reached its declared size


class ChunkWriter:
    """Writes one request's body at the end of a part; a context manager.

    Holds an exclusive lock on the part for the request. Bytes beyond what the
    request may add are refused before they are written (``too_large``), and the
    chunk's bytes are then taken back, so a refused chunk leaves the part as it
    was. A request that breaks off (the client's link dropped) keeps what
    arrived: that is what the client resumes after.
    """

    def __init__(self, path: Path, offset: int, allowed: int):
        self.path = path
        self.start = offset
        self.allowed = allowed  # bytes this request may add
        self.written = 0
        self._fd: int | None = None

    def __enter__(self) -> "ChunkWriter":
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadError("another request is writing this part right now; retry in a moment", "busy") from None
        size = os.fstat(fd).st_size
        if size != self.start:
            os.close(fd)
            raise UploadError(f"chunk starts at byte {self.start} but the part has {size} bytes; "
                              f"continue from {size}", "offset", offset=size)
        os.lseek(fd, self.start, os.SEEK_SET)
        self._fd = fd
        return self

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.allowed:
            raise UploadError(f"chunk is larger than allowed: at most {self.allowed} more bytes may follow "
                              f"byte {self.start}", "too_large")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UploadError("the upload area is full; try again later", "storage") from None
                raise
            view = view[n:]
            self.written += n

    def __exit__(self, exc_type, exc, tb) -> None:
        fd, self._fd = self._fd, None
        try:
            if isinstance(exc, UploadError):  # refused: take the chunk back, whole
                os.ftruncate(fd, self.start)
                self.written = 0
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock

    @property
    def offset(self) -> int:
        return self.start + self.written


class UploadArea:
    """Upload folders under ``root``: ``<root>/<id>/video`` and ``<root>/<id>/telemetry.srt``."""

    def __init__(self, root: str | Path, max_bytes: int = 4 * GiB, chunk_max_bytes: int = 64 * MiB,
                 srt_max_bytes: int = 64 * MiB):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.chunk_max_bytes = chunk_max_bytes
        self.srt_max_bytes = srt_max_bytes

    # -- where things are ------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def folder(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
            raise UploadError(f"no upload {str(upload_id)[:40]!r}", "missing")
        return self._confined(self.root / upload_id)

    def path(self, upload_id: str, part: str) -> Path:
        if part not in PARTS:
            raise UploadError(f"unknown part {str(part)[:20]!r}; one of {', '.join(PARTS)}", "missing")
        return self._confined(self.folder(upload_id) / PARTS[part])

    def relative(self, upload_id: str, part: str) -> str:
        """The part's path relative to the root: what travels in a job message."""
        return self.path(upload_id, part).relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """A path from a job message, confined to this area (another machine's root may differ)."""
        target = self._confined(self.root / relative)
        upload_id, _, name = Path(relative).as_posix().partition("/")
        if name not in PARTS.values() or not UPLOAD_ID.fullmatch(upload_id):
            raise UploadError(f"{relative!r} is not a part of an upload", "missing")
        return target

    def _confined(self, p: Path) -> Path:
        resolved = p.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UploadError("path outside the upload area refused", "missing")
        return resolved

    def limit(self, part: str) -> int:
        return self.max_bytes if part == "video" else self.srt_max_bytes

    def check_size(self, part: str, size: int) -> int:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise UploadError(f"{part} size must be a positive number of bytes", "bad")
        if size > self.limit(part):
            raise UploadError(f"{part} of {size} bytes is larger than the {_size(self.limit(part))} allowed",
                              "too_large")
        return size

    # -- writing -----------------------------------------------------------------------

    def create(self, upload_id: str, parts: Iterable[str]) -> None:
        """The upload's folder with an empty file per part (so its offset is 0)."""
        folder = self.folder(upload_id)
        folder.mkdir(mode=0o750)
        for part in parts:
            self.path(upload_id, part).touch(mode=0o640)

    def offset(self, upload_id: str, part: str) -> int:
        """Bytes of the part stored so far: where the client continues."""
        try:
            return self.path(upload_id, part).stat().st_size
        except FileNotFoundError:
            raise UploadError(f"upload {upload_id} has no {part} part", "missing") from None

    def chunk(self, upload_id: str, part: str, offset: int, total: int, length: int | None = None) -> ChunkWriter:
        """A writer for one chunk at ``offset`` of a part declared ``total`` bytes long.

        ``length`` (the request's Content-Length, when it has one) is checked
        first, so an oversized body is refused before a byte of it is read.
        """
        path = self.path(upload_id, part)
        if not path.exists():
            raise UploadError(f"upload {upload_id} has no {part} part", "missing")
        if not isinstance(offset, int) or offset < 0:
            raise UploadError("offset must be a whole number of bytes, 0 or more", "bad")
        if offset > total:
            raise UploadError(f"offset {offset} is beyond the {part}'s declared {total} bytes", "too_large")
        allowed = min(self.chunk_max_bytes, total - offset)
        if length is not None and length > allowed:
            if length > self.chunk_max_bytes:
                why = f"chunks are at most {_size(self.chunk_max_bytes)}"
            else:
                why = f"only {total - offset} bytes of the declared {total} remain after byte {offset}"
            raise UploadError(f"chunk of {length} bytes refused: {why}", "too_large")
        return ChunkWriter(path, offset, allowed)

    def write_chunk(self, upload_id: str, part: str, offset: int, total: int, data: bytes | Iterable[bytes],
                    length: int | None = None) -> ChunkResult:
        """Write a whole chunk (bytes, or an iterable of blocks as they arrive)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            length, data = len(data), [bytes(data)]
        with self.chunk(upload_id, part, offset, total, length) as w:
            for block in data:
                w.write(block)
        return ChunkResult(w.offset, w.written, w.offset == total)

    def verify(self, upload_id: str, part: str, size: int, sha256: str) -> None:
        """Raise ``integrity`` unless the stored part has the declared size and SHA-256."""
        have = self.offset(upload_id, part)
        if have != size:
            raise UploadError(f"{part} is incomplete: {have} of {size} bytes received; continue from {have}",
                              "offset", offset=have)
        digest = sha256_of(self.path(upload_id, part))
        if digest != sha256:
            raise UploadError(f"{part} SHA-256 is {digest}, not the declared {sha256}: the bytes changed on the "
                              "way; upload the file again", "integrity")


def _size(n: int) -> str:
    for unit, step in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= step:
            return f"{n / step:g} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------- content


def validate_video(path: str | Path, name: str | None = None) -> VideoInfo:
    """Check that a stored file is a flight video the product can analyse.

    MP4/MOV container, a video stream in H.264 or H.265, a known duration, a first
    frame that decodes and video that reaches the end it declares (a file cut short
    with its index at the front opens fine but stops early). Raises ``media``.
    """
    shown = name or Path(path).name
    try:
        info = probe(str(path))
    except SourceError as err:
        reason = str(err).split(": ", 1)[-1]  # without the server's path
        raise UploadError(f"{shown}: {reason}; only whole MP4/MOV videos can be analysed", "media") from None
    container = open_container(str(path))
    try:
        formats = set(container.format.name.split(","))
        if not formats & {"mov", "mp4"}:
            raise UploadError(f"{shown}: the container is {container.format.long_name or container.format.name}; "
                              "only MP4 or MOV", "media")
        if info.codec not in CODECS:
            raise UploadError(f"{shown}: the video codec is {info.codec}; only H.264 or H.265", "media")
        if not info.duration_s or info.duration_s <= 0:
            raise UploadError(f"{shown}: the video declares no duration; is it complete?", "media")
        stream = container.streams.video[0]
        if _first_frame(container, stream) is None:
            raise UploadError(f"{shown}: the first frame does not decode; the file is corrupt", "media")
        last = max(0.0, info.duration_s - 1.0)
        reached = _reach(container, stream, last)
        if reached is None or reached + 2.0 < last:
            got = "nothing" if reached is None else f"{reached:.1f} s"
            raise UploadError(f"{shown}: the video is cut off: it declares {info.duration_s:.1f} s but no frame "
                              f"near the end could be read (reached {got}); upload the whole file", "media")
    except av.FFmpegError as err:
        raise UploadError(f"{shown}: corrupt video ({getattr(err, 'strerror', None) or err})", "media") from None
    finally:
        container.close()
    return info


def _first_frame(container, stream):
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError:
        return None
    return None


def _reach(container, stream, t: float) -> float | None:
    """Seconds of the last packet with data found after seeking towards ``t``; None if none."""
    tb = float(stream.time_base)
    start = stream.start_time or 0
    container.seek(int(t / tb) + start, stream=stream, backward=True, any_frame=False)
    reached = None
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                reached = max(reached or 0.0, (packet.pts - start) * tb)
    except av.FFmpegError:
        pass
    return reached


def validate_srt(path: str | Path, video_duration_s: float, name: str | None = None,
                 tolerance_s: float = SRT_TOLERANCE_S) -> Track:
    """Parse a DJI SRT and check it belongs to a video of that length; raises ``media``."""
    shown = name or Path(path).name
    try:
        track = parse_srt(Path(path))
        track.check_against(video_duration_s, tolerance_s)
    except TelemetryError as err:
        reason = str(err)
        if reason.startswith(str(path)):
            reason = reason[len(str(path)):].lstrip(": ")
        raise UploadError(f"{shown}: {reason}", "media") from None
    return track


__all__ = ["ChunkResult", "ChunkWriter", "GiB", "MiB", "PARTS", "UploadArea", "UploadError", "check_sha256",
           "clean_name", "sha256_of", "validate_srt", "validate_video"]
