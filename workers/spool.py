"""Events a worker could not publish, kept in order until Redis is back.

They go to a folder on disk, one file per event named by a sequence number, so a long
Redis outage costs disk (bounded), not the worker's memory, and a restarted worker
publishes what its predecessor could not. When the bound is reached the oldest events are
dropped and counted: a violation still in view is seen again, while an unbounded queue
would end the worker. Without a folder (tests, tools) a bounded deque in memory does.
"""
from __future__ import annotations

import json
import logging
import os
from collections import deque
from pathlib import Path

from vision.events import Event

log = logging.getLogger(__name__)

MEMORY_EVENTS = 1000  # the bound without a folder
DISK_BYTES = 256 << 20  # the folder's bound


class EventSpool:
    def __init__(self, folder: str | Path | None = None, memory_events: int = MEMORY_EVENTS,
                 disk_bytes: int = DISK_BYTES):
        self.folder = Path(folder) if folder is not None else None
        self.memory_events = memory_events
        self.disk_bytes = disk_bytes
        self._memory: deque[Event] = deque()
        self.dropped = 0
        self._files: deque[tuple[Path, int]] = deque()  # oldest first, with sizes
        self._bytes = 0
        self._seq = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.folder.glob("*.json")):  # left by an earlier run: published first
                size = path.stat().st_size
                self._files.append((path, size))
                self._bytes += size
                self._seq = max(self._seq, int(path.stem) + 1)

    def __len__(self) -> int:
        return len(self._files) + len(self._memory)

    def add(self, event: Event) -> None:
        """Keep an event behind the ones already held."""
        if self.folder is not None:
            self._spill(event)
            return
        self._memory.append(event)
        while len(self._memory) > self.memory_events:
            self._memory.popleft()
            self.dropped += 1

    def oldest(self) -> Event | None:
        """The next event to publish, or None. It stays held until ``done()``."""
        while self._files:
            path, _ = self._files[0]
            try:
                return Event.from_message(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as err:  # unreadable: say so and go on
                log.warning("spooled event %s unreadable, skipped: %s", path.name, err)
                self._drop_file()
                self.dropped += 1
        return self._memory[0] if self._memory else None

    def done(self) -> None:
        """The oldest event was published."""
        if self._files:
            self._drop_file()
        elif self._memory:
            self._memory.popleft()

    def _spill(self, event: Event) -> None:
        body = json.dumps(event.to_message()).encode()
        while self._files and self._bytes + len(body) > self.disk_bytes:
            self._drop_file()
            self.dropped += 1
        path = self.folder / f"{self._seq:012d}.json"
        self._seq += 1
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(body)
            os.replace(tmp, path)
        except OSError as err:  # a full disk as well: this one is lost, and counted
            log.warning("cannot spool an event to %s: %s", self.folder, err)
            self.dropped += 1
            return
        self._files.append((path, len(body)))
        self._bytes += len(body)

    def _drop_file(self) -> None:
        path, size = self._files.popleft()
        self._bytes -= size
        try:
            path.unlink()
        except OSError:
            pass
