"""One reader thread per source: connect, sample, keep the newest, reconnect.

The same code reads cameras (rtsp, rtmp, http-flv, hls) and files played at
real-time pace, so the demo exercises the path production uses. A reader never
blocks its consumer: `latest()` only swaps a slot under a lock, and a slow
consumer costs dropped samples, which are counted, not a growing queue.
"""
from __future__ import annotations

from enum import StrEnum

import collections
import logging
import random
import threading
import time
import weakref
from typing import Callable

import av

from streams.frame import Frame
from streams.reader import (
    SampleStats,
    Sampler,
    SourceError,
    is_live_url,
    open_container,
    redact,
    video_stream,
)

log = logging.getLogger(__name__)

class SourceState(StrEnum):
    """What a reader says of its source (the sources page and /metrics show it)."""

    CONNECTING = "connecting"
    LIVE = "live"
    STALLED = "stalled"  # connected, but no picture for a while
    DOWN = "down"  # failed or ended; reconnecting with backoff unless it was a file that ended


STATES = tuple(SourceState)
StateCallback = Callable[[str, str, str], None]

# Time a blocking FFmpeg call may overrun its own timeouts before the watchdog
# reports the source as hung.
_WATCHDOG_GRACE_S = 2.0
_RATE_WINDOW_S = 5.0
# Doublings after which the backoff is surely at its cap: 2**1024 would not even fit
# a float, and a camera unreachable overnight fails more often than that.
_MAX_DOUBLINGS = 30
# A file played as live whose clock jumps ahead by more than this is re-anchored,
# not waited for: a recording with a gap must not hold its reader for the gap.
_MAX_PACE_GAP_S = 5.0


class _Failure(Exception):
    """The current connection is finished; `state` says how it is reported."""

    def __init__(self, detail: str, state: str = "down"):
        super().__init__(detail)
        self.state = state


class _Rate:
    """Events per second over the last few seconds (decays to 0 when they stop)."""

    def __init__(self, window_s: float = _RATE_WINDOW_S):
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self._first = 0.0  # start of the current run of events

    def add(self, now: float) -> None:
        if not self._times:
            self._first = now
        self._times.append(now)
        self._trim(now)

    def per_s(self, now: float) -> float:
        self._trim(now)
        if not self._times:
            return 0.0
        # Until a whole window has passed, divide by the time actually observed.
        span = min(self.window_s, max(now - self._first, 1.0))
        return len(self._times) / span

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


class LiveReader:
    """Reads one source on its own thread and keeps only its newest sample.

    States: ``connecting`` (first attempt), ``live`` (samples arriving),
    ``stalled`` (the connection is open but no picture comes: nothing arrives
    within the read timeout, or packets arrive but nothing decodes; the
    connection is restarted), ``down`` (the last attempt failed; retrying with
    capped exponential backoff and jitter, so cameras behind one gateway do not
    all reconnect in the same instant, and a source away for hours is picked up
    again within ``backoff_max_s`` of its return).

    A change of resolution mid-stream (a gateway switching profiles, a phone
    turned) is followed, not treated as a failure: samples keep their aspect and
    ``source_size`` says the new size.

    Live samples carry wall-clock ``ts``; a file is played at its own pace as a
    simulated camera and also gets wall-clock ``ts``, with the file's
    presentation time in ``frame.extra["pts"]``.
    """

    def __init__(
        self,
        source_id: str,
        url: str,
        interval_s: float = 2.0,
        max_side: int = 640,
        keyframes_only: bool | None = None,
        transport: str = "tcp",
        open_timeout_s: float = 5,
        read_timeout_s: float = 5,
        stall_timeout_s: float = 10,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30,
        loop: bool = False,
        on_state: StateCallback | None = None,
        deblock_key_frames: bool = False,
    ):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.source_id = source_id
        self.url = url
        self.interval_s = interval_s
        self.max_side = max_side
        self.keyframes_only = keyframes_only
        self.transport = transport
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.loop = loop
        self.on_state = on_state
        self.deblock_key_frames = deblock_key_frames  # see Sampler's `deblock`
        self.is_file = not is_live_url(url)

        self._lock = threading.Lock()
        self._slot: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "down"
        self._since = time.time()
        self._last_error: str | None = None
        self._samples = 0
        self._dropped = 0
        self._reconnects = 0
        self._last_sample_ts: float | None = None
        self._packets_in = _Rate()
        self._samples_out = _Rate()
        self._sampler_stats = SampleStats()  # summed over all connections
        # Monotonic time by which the FFmpeg call in progress must return; None when
        # the thread is not inside one. Read by the watchdog.
        self._io_deadline: float | None = None
        self._io_what = ""
        self._hung = False
        self._went_live = False
        self._size: tuple[int, int] | None = None  # source size of the newest sample

    # ------------------------------------------------------------ consumer side

    def start(self) -> LiveReader:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._set_state("connecting", redact(self.url))
        self._thread = threading.Thread(target=self._run, name=f"reader:{self.source_id}", daemon=True)
        self._thread.start()
        _watchdog.watch(self)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to finish and wait for it (by default as long as one
        FFmpeg read may take)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout if timeout is not None else max(self.open_timeout_s, self.read_timeout_s) * 2 + 1)
        self._set_state("down", "stopped")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> Frame | None:
        """The newest sample not yet taken, or None; never waits for the reader."""
        with self._lock:
            frame, self._slot = self._slot, None
        return frame

    @property
    def state(self) -> str:
        return self._state

    @property
    def sampler_stats(self) -> SampleStats:
        """What the sampler did, summed over every connection (packets, decoding CPU time...)."""
        return self._sampler_stats

    def stats(self) -> dict:
        now = time.monotonic()
        with self._lock:
            return {
                "state": self._state,
                "samples": self._samples,
                # samples the detector never saw: replaced in the slot, or held and superseded undecoded
                "dropped": self._dropped + self._sampler_stats.superseded,
                "reconnects": self._reconnects,
                "last_error": self._last_error,
                "last_sample_ts": self._last_sample_ts,
                "fps_in": round(self._packets_in.per_s(now), 2),
                "samples_per_s": round(self._samples_out.per_s(now), 2),
                "since": self._since,
                "corrupt": self._sampler_stats.corrupt,
                "keyframes_only": self._sampler_stats.keyframes_only,
                "size": f"{self._size[0]}x{self._size[1]}" if self._size else None,
                "interval_s": self.interval_s,
            }

    # ------------------------------------------------------------ reader thread

    def _run(self) -> None:
        failures = 0  # consecutive connections that never delivered a sample
        reconnect = False
        while not self._stop.is_set():
            if reconnect:
                with self._lock:
                    self._reconnects += 1
            reconnect = True
            self._went_live = False
            try:
                self._session()
            except _Failure as err:
                if self._stop.is_set():
                    break
                failures = 0 if self._went_live else failures + 1
                with self._lock:
                    self._last_error = str(err)
                self._set_state(err.state, str(err))
                self._stop.wait(self._backoff(failures))
                continue
            if self._stop.is_set():
                break
            if not self.loop:  # only a file ends without failing
                self._set_state("down", "end of file")
                break
            reconnect = False  # starting the file again is not a reconnect

    def _backoff(self, failures: int) -> float:
        """Capped exponential delay, then a random half of it off ("equal jitter")."""
        doublings = min(_MAX_DOUBLINGS, max(0, failures - 1))
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0**doublings)
        return base / 2 + random.uniform(0, base / 2)

    def _session(self) -> None:
        """One connection: returns when a file ends or on stop, raises `_Failure`
        when the connection is lost. Sets `_went_live` once a sample is out."""
        container = None
        try:
            container = self._call(
                "opening",
                2 * self.open_timeout_s,  # the header and the stream analysis each get the open timeout
                lambda: open_container(
                    self.url, self.open_timeout_s, transport=self.transport, read_timeout_s=self.read_timeout_s
                ),
            )
            stream = video_stream(container, self.url)
            self._read(container, stream)
        except SourceError as err:
            raise _Failure(str(err)) from None
        except (av.FFmpegError, OSError) as err:
            raise _Failure(self._describe(err)) from None
        finally:
            if container is not None:
                container.close()

    def _read(self, container, stream) -> None:
        stats = self._sampler_stats
        sampler = Sampler(stream, self.interval_s, self.max_side, self.keyframes_only, stats,
                          deblock=self.deblock_key_frames)
        packets = container.demux()
        pacer = _Pacer() if self.is_file else None
        size = None
        pending_since = None  # when the decoder was first fed without anything coming out since
        held_at = None  # wall time the held key frame arrived
        last_video = last_sample = time.monotonic()
        # Longest a working stream goes without a sample (a due key frame may come a GOP late).
        sample_gap_s = self.stall_timeout_s + 2 * self.interval_s
        while not self._stop.is_set():
            try:
                packet = self._call("reading", self.read_timeout_s, lambda: next(packets, None))
            except (av.ExitError, TimeoutError):  # a read timeout: connected, but the stream went silent
                raise _Failure(f"{redact(self.url)}: no data for {self.read_timeout_s:g} s", "stalled") from None
            if packet is None:
                if not self.is_file:
                    raise _Failure(f"{redact(self.url)}: stream ended")
                for s in sampler.release():  # the newest sample is what a file leaves behind
                    self._publish(s, held_at)
                held_at = None
                if not self.loop or self._stop.is_set():
                    return
                # Played again: rewound, not reopened. Opening probes the stream anew (decoding
                # frames nobody looks at); the sampler keeps what it learned of the key-frame
                # spacing; its sampling grid and the pacer start afresh.
                container.seek(0)
                packets = container.demux()
                sampler.rewind()
                pacer = _Pacer()
                last_video = last_sample = time.monotonic()
                continue
            now = time.monotonic()
            if packet.stream.index != stream.index:
                if now - last_video > self.stall_timeout_s:
                    raise _Failure(f"{redact(self.url)}: no video for {self.stall_timeout_s:g} s", "stalled")
                continue
            last_video = now
            if packet.size:
                with self._lock:  # stats() reads the same deque from the consumer's thread
                    self._packets_in.add(now)
            if pacer is not None and not pacer.wait(sampler.seconds(packet.dts), self._stop):
                return
            sent, decoded = stats.sent, stats.decoded
            # The detector has not taken the last sample: a due key frame waits undecoded
            # (the newest one wins) and is decoded the moment the slot is free, unless the
            # sample waiting has grown stale; then it is decoded and replaces it.
            waiting = self._slot
            hold = (stats.keyframes_only and waiting is not None
                    and time.time() - waiting.ts < _HOLD_STALE_INTERVALS * self.interval_s)
            held_before = stats.held
            out = sampler.push(packet, hold=hold)
            if stats.held > held_before:
                held_at = time.time()  # when the key frame now held came
            arrived = None  # for a released sample: when its key frame came, which is its time
            if sampler.held is not None:
                if self._slot is None:
                    out += sampler.release()
                    arrived, held_at = held_at, None
                else:
                    last_sample = now  # held samples are progress: the stream is fine, the detector is behind
            for s in out:
                if size is not None and s.source_size != size:
                    detail = (f"resolution changed from {size[0]}x{size[1]} "
                              f"to {s.source_size[0]}x{s.source_size[1]}")
                    self._set_state("live", detail, force=True)
                size = s.source_size
                self._publish(s, arrived)
                last_sample = now
            if stats.decoded > decoded:
                pending_since = None
            elif stats.sent > sent and pending_since is None:
                pending_since = now
            if pending_since is not None and now - pending_since > self.stall_timeout_s:
                raise _Failure(
                    f"{redact(self.url)}: packets arrive but nothing decoded for {self.stall_timeout_s:g} s", "stalled"
                )
            if now - last_sample > sample_gap_s:  # e.g. timestamps that stopped advancing
                raise _Failure(f"{redact(self.url)}: packets arrive but no sample for {sample_gap_s:g} s", "stalled")

    def _call(self, what: str, timeout_s: float, fn):
        """Run a blocking FFmpeg call under the watchdog's eye."""
        self._io_what = what
        self._io_deadline = time.monotonic() + timeout_s + _WATCHDOG_GRACE_S
        try:
            return fn()
        finally:
            self._io_deadline = None
            self._hung = False

    def _describe(self, err: Exception) -> str:
        reason = getattr(err, "strerror", None) or str(err)
        if isinstance(err, av.ExitError):  # PyAV's interrupt callback: our read timeout fired
            reason = f"no data for {self.read_timeout_s:g} s"
        return f"{redact(self.url)}: {reason}"

    def _publish(self, s, arrived: float | None = None) -> None:
        """Put a sample in the slot; ``arrived``: when its key frame came, if it was held."""
        if self._stop.is_set():
            return
        self._went_live = True
        now = arrived or time.time()
        frame = Frame(
            self.source_id,
            now,
            s.image,
            index=self._samples,
            source_size=s.source_size,
            keyframe=s.keyframe,
            extra={"pts": s.t},
        )
        with self._lock:
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._samples += 1
            self._last_sample_ts = now
            self._size = s.source_size
            self._samples_out.add(time.monotonic())
        if self._state != "live":
            self._set_state("live", f"{s.source_size[0]}x{s.source_size[1]}")

    def _set_state(self, state: str, detail: str = "", force: bool = False) -> None:
        """Enter ``state`` and tell ``on_state``; ``force`` tells it a new detail
        even when the state stays the same."""
        with self._lock:
            if state == self._state and not force:
                return
            if state != self._state:
                self._since = time.time()
            self._state = state
        log.info("source %s: %s (%s)", self.source_id, state, detail)
        if self.on_state is not None:
            try:
                self.on_state(self.source_id, state, detail)
            except Exception:  # a broken callback must not kill the reader
                log.exception("on_state callback failed for source %s", self.source_id)

    def _check_hung(self, now: float) -> None:
        """Called by the watchdog: report a call that overran every timeout.

        The call cannot be cut short from here (closing a container while another
        thread is inside it would free memory FFmpeg is using), so the reader is
        reported `down` and resumes by itself whenever the call returns.
        """
        deadline = self._io_deadline
        if deadline is None or now < deadline or self._hung or self._stop.is_set():
            return
        self._hung = True
        detail = f"{redact(self.url)}: {self._io_what} blocked past its timeout"
        with self._lock:
            self._last_error = detail
        self._set_state("down", detail)


# A sample waiting this many intervals for the detector is stale: the next due key frame is
# decoded and replaces it rather than being held. Under overload the reader then decodes one
# key frame per two intervals, not one per interval, and the detector never gets a sample
# older than this.
_HOLD_STALE_INTERVALS = 2.0


class _Pacer:
    """Holds a file's packets back to real time, as a camera would deliver them."""

    def __init__(self):
        self._origin: tuple[float, float] | None = None  # (wall clock, media time)

    def wait(self, media_t: float | None, stop: threading.Event) -> bool:
        """False when asked to stop while waiting."""
        if media_t is None:
            return True
        now = time.monotonic()
        if self._origin is None or media_t < self._origin[1]:
            self._origin = (now, media_t)
            return True
        due = self._origin[0] + (media_t - self._origin[1])
        if due - now > _MAX_PACE_GAP_S:  # the file's clock jumped ahead: carry on from here
            self._origin = (now, media_t)
            return True
        # A plain sleep, a packet's time at a time: it costs no lock, where an Event.wait
        # allocates one per call (25 calls a second per source); a stop is seen within 0.2 s.
        while now < due:
            if stop.is_set():
                return False
            time.sleep(min(due - now, 0.2))
            now = time.monotonic()
        return not stop.is_set()


class _Watchdog:
    """One thread for all readers that flags any stuck inside FFmpeg."""

    def __init__(self, tick_s: float = 0.25):
        self.tick_s = tick_s
        self._readers: weakref.WeakSet[LiveReader] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, reader: LiveReader) -> None:
        with self._lock:
            self._readers.add(reader)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reader-watchdog", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.tick_s)
            now = time.monotonic()
            with self._lock:
                readers = list(self._readers)
            for r in readers:
                if r.running:
                    r._check_hung(now)


_watchdog = _Watchdog()
