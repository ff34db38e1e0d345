"""Evidence files on disk, addressed by the SHA-256 of their content.

A key looks like ``ab/cdef…(62 hex).jpg``: the same snapshot stored twice is one
file, a key never goes stale, and the two-character fan-out keeps directories
small. Keys are checked against that exact shape, so a key taken from a request
can never point outside the root.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{62}\.[a-z0-9]{1,8}")
EXT = re.compile(r"[a-z0-9]{1,8}")


class EvidenceKeyError(ValueError):
    """A key or extension that is not of the store's shape."""


class EvidenceStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, ext: str = "jpg") -> str:
        ext = ext.lower().lstrip(".")
        if not EXT.fullmatch(ext):
            raise EvidenceKeyError(f"extension {ext!r} must be 1-8 letters or digits")
        digest = hashlib.sha256(data).hexdigest()
        key = f"{digest[:2]}/{digest[2:]}.{ext}"
        target = self.path(key)
        if target.exists():  # same content, same key: nothing to write
            return key
        target.parent.mkdir(exist_ok=True)
        # Write beside the target and rename: a reader never sees half a file,
        # and a crash leaves only a temp file, never a wrong one under a real key.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise EvidenceKeyError(f"not an evidence key: {key!r}")
        return self.root / key

    def get(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError if the key was never stored here."""
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()
