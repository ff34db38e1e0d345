"""Opening, decoding and sampling video with PyAV (no threads here; see live.py).

The patrol rate is far below the frame rate, so most of the cost of a stream is
work that can be skipped: packets that will never be looked at are not sent to
the decoder when the key-frame spacing allows it, and only the frames that fall
due are converted, straight to the detector's size.
"""
from __future__ import annotations

import errno
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from streams.frame import Frame

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")

# A key frame spacing a hair above the interval (timestamp rounding) still allows
# key-frame-only decoding.
_GOP_TOLERANCE = 1.02
# Key-frame spacings remembered to judge the GOP; one long GOP is enough to switch
# back to full decoding, since a missed reference costs a whole GOP of samples.
_GOP_HISTORY = 4
# A file that stops this much short of its declared duration was cut off.
_TRUNCATION_SLACK_S = 1.0
# Demux errors in a row after which a file is given up as unreadable.
_MAX_DEMUX_ERRORS = 20


class SourceError(RuntimeError):
    """A source cannot be read; the message is one line meant for a person."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    fps: float | None
    duration_s: float | None  # None for live streams
    created: float | None = None  # Unix seconds of the recording's start, where the container says (creation_time)


@dataclass(slots=True)
class SampleStats:
    """What a sampler did with a stream; for tests, benchmarks and the reader's stats."""

    packets: int = 0  # video packets read
    sent: int = 0  # packets sent to the decoder
    decoded: int = 0  # frames that came out of the decoder
    samples: int = 0  # frames converted into samples
    corrupt: int = 0  # packets the decoder rejected
    gop_s: float | None = None  # latest key-frame spacing seen
    keyframes_only: bool = False  # whether non-key packets are being dropped
    held: int = 0  # due key frames kept undecoded while the last sample still waited for the detector
    superseded: int = 0  # held key frames replaced by a newer one before they were decoded
    decode_s: float = 0.0  # CPU time of this thread spent in the decoder
    convert_s: float = 0.0  # CPU time spent scaling and converting samples


@dataclass(slots=True)
class Sample:
    """A converted frame, before the caller wraps it into a `Frame`."""

    image: np.ndarray
    t: float  # seconds of presentation time from the start of the stream
    keyframe: bool
    source_size: tuple[int, int]


# ---------------------------------------------------------------- opening


def redact(url: str) -> str:
    """The URL without its password, fit for logs and error messages."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def scheme_of(url: str) -> str:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
    return m.group(1).lower() if m else "file"


def is_live_url(url: str) -> bool:
    return scheme_of(url) in LIVE_SCHEMES


def local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def container_options(url: str, timeout_s: float, transport: str = "tcp") -> dict[str, str]:
    """FFmpeg options for opening `url`, so that no network read can block forever."""
    scheme = scheme_of(url)
    if scheme == "file":
        return {}
    us = str(int(timeout_s * 1_000_000))
    # Live streams announce their parameters quickly; the default 5 s of analysis
    # only delays the first sample.
    opts = {"analyzeduration": "1000000"}
    if scheme in ("rtsp", "rtsps"):
        if transport not in ("tcp", "udp"):
            raise ValueError(f"RTSP transport must be 'tcp' or 'udp', not {transport!r}")
        # For RTSP `timeout` is the socket I/O timeout; audio tracks are not set up.
        opts.update(rtsp_transport=transport, timeout=us, allowed_media_types="video")
    else:
        # Never `timeout` here: for rtmp:// it means "listen for a publisher"
        # (and fails with "Address already in use"). rw_timeout is the I/O timeout
        # of every protocol, http and HLS segment fetches included.
        opts["rw_timeout"] = us
    return opts


def open_container(
    url: str, timeout_s: float = 5.0, *, transport: str = "tcp", read_timeout_s: float | None = None
) -> av.container.InputContainer:
    """Open a file or stream for reading, or raise `SourceError` saying why not.

    Network sources also get PyAV's own timeouts, one for opening and one per
    packet read, on top of the protocol's socket timeout. PyAV's `timeout=` is
    an interrupt callback FFmpeg polls while it waits, not FFmpeg's `timeout`
    option, so it is safe for rtmp:// too.
    """
    target = local_path(url)
    kwargs = {}
    if is_live_url(url):
        kwargs["timeout"] = (timeout_s, read_timeout_s if read_timeout_s is not None else timeout_s)
    elif os.path.isdir(target):
        raise SourceError(f"cannot open {target}: it is a directory, not a video file")
    try:
        return av.open(target, options=container_options(url, timeout_s, transport), **kwargs)
    except av.InvalidDataError:
        what = "invalid data" if is_live_url(url) else "not a media file, or cut off before its index"
        raise SourceError(f"cannot open {redact(target)}: not a readable video ({what})") from None
    except av.FFmpegError as err:
        reason = _reason(err)
        if scheme_of(url).startswith("rtmp") and err.errno == errno.EPERM:
            reason = "the server refused to play it (no such stream?)"
        raise SourceError(f"cannot open {redact(target)}: {reason}") from None
    except OSError as err:  # PyAV raises plain OSErrors for some protocol failures
        raise SourceError(f"cannot open {redact(target)}: {err.strerror or err}") from None


def _reason(err: Exception) -> str:
    reason = getattr(err, "strerror", None) or str(err)
    if isinstance(err, av.ExitError) or reason == "Immediate exit requested":
        return "timed out"
    return reason


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise SourceError(f"{redact(name)} has no video stream")
    return container.streams.video[0]


def probe(path_or_url: str, timeout_s: float = 5.0) -> VideoInfo:
    """Size, codec, frame rate and duration, from the container header only."""
    container = open_container(path_or_url, timeout_s)
    try:
        stream = video_stream(container, path_or_url)
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            fps=float(rate) if rate else None,
            duration_s=None if is_live_url(path_or_url) else _duration(container, stream),
            created=_created(container, stream),
        )
    finally:
        container.close()


def _created(container, stream) -> float | None:
    """The recording's start from its ``creation_time`` tag (phones and dashcams write it, in UTC)."""
    for tags in (stream.metadata, container.metadata):
        value = (tags or {}).get("creation_time")
        if value:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return None


def _duration(container, stream) -> float | None:
    """Seconds of video the header declares: the video stream's own, else the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


# ---------------------------------------------------------------- sampling


def sample_size(src_w: int, src_h: int, max_side: int = 640) -> tuple[int, int]:
    """The sample size for a video: longest side at most `max_side`, aspect kept,
    even numbers (what YUV 4:2:0 scalers and most encoders want). Never upscales."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"bad video size {src_w}x{src_h}")
    scale = min(1.0, max_side / max(src_w, src_h))

    def even(x: float, limit: int) -> int:  # nearest even number, but not above the source's
        return max(2, min(int(x / 2 + 0.5) * 2, limit // 2 * 2))

    return even(src_w * scale, src_w), even(src_h * scale, src_h)


class Sampler:
    """Turns a video stream's packets into samples, one per `interval_s`.

    `keyframes_only`: True drops every non-key packet before decoding; False
    decodes everything; None decides from the key-frame spacing seen in the
    stream (drop non-key packets while key frames come at least once per
    interval, decode everything otherwise, since P-frames need their references).

    Due times lie on a grid anchored at the first sample: the first frame whose
    time reaches the next grid point is taken.

    `deblock`: False skips the deblocking (loop) filter when a key frame is decoded
    alone. It is a tenth of what such a frame costs, and nothing can drift: no other
    frame is decoded from that picture. The picture differs by about one grey level
    (`docs/benchmarks.md`). Frames decoded in sequence are always deblocked.
    """

    def __init__(
        self,
        stream: av.video.stream.VideoStream,
        interval_s: float,
        max_side: int = 640,
        keyframes_only: bool | None = None,
        stats: SampleStats | None = None,
        deblock: bool = True,
    ):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.stream = stream
        self.ctx = stream.codec_context
        self.deblock = deblock
        self._lone_ctx = None  # the decoder of key frames decoded alone, when it differs from ctx
        self.interval_s = interval_s
        self.max_side = max_side
        self.policy = keyframes_only
        self.stats = stats if stats is not None else SampleStats()
        if keyframes_only is not None:
            self.stats.keyframes_only = keyframes_only
        # else: stats carried over from an earlier connection to the same source keep what its
        # key-frame spacing showed. A reconnect (or a file played again) then starts dropping
        # non-key packets at once instead of decoding a GOP or two in full to find out again;
        # a stream whose GOP grew meanwhile is caught at its second key frame.
        self._tb = float(stream.time_base) if stream.time_base else None
        self._start = stream.start_time  # in time_base units; None for many live streams
        self._due: float | None = None
        self._last_key_t: float | None = None
        self._gops: list[float] = []
        self._last_t: float | None = None
        rate = stream.average_rate or stream.guessed_rate
        self._frame_s = 1.0 / float(rate) if rate else 0.04
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self.held: av.Packet | None = None  # a due key frame waiting, undecoded, for the detector to have room

    # Times are seconds from the stream's start, so a file's first frame is at ~0.
    def seconds(self, pts: int | None) -> float | None:
        if pts is None or self._tb is None:
            return None
        if self._start is None:
            self._start = pts
        return (pts - self._start) * self._tb

    def is_due(self, t: float) -> bool:
        # A clock that jumps back (a live stream restarting its timestamps) re-anchors the grid.
        if self._due is None or t < self._due - 2 * self.interval_s:
            return True
        return t >= self._due - 1e-6

    def _taken(self, t: float) -> None:
        if self._due is None or t < self._due - 2 * self.interval_s:
            self._due = t
        self._due += self.interval_s * max(1, math.floor((t - self._due) / self.interval_s + 1e-9) + 1)

    def _note_keyframe(self, t: float) -> None:
        if self._last_key_t is not None and t > self._last_key_t:
            self._gops = (self._gops + [t - self._last_key_t])[-_GOP_HISTORY:]
            self.stats.gop_s = self._gops[-1]
            if self.policy is None:
                self.stats.keyframes_only = max(self._gops) <= self.interval_s * _GOP_TOLERANCE
        self._last_key_t = t

    def push(self, packet: av.Packet, hold: bool = False) -> list[Sample]:
        """Feed one demuxed packet of this stream; returns the samples it completes.
        An empty packet (PyAV's end-of-stream marker) flushes the decoder.

        ``hold``: the caller's last sample has not been taken yet. A due key frame is then
        kept as it came (tens of KB) instead of decoded, until ``release()``, or replaced
        undecoded by the next due one: a detector that is behind costs no decoding of
        samples it would never see. Only where key frames decode alone (keyframes-only)."""
        if packet.size == 0:
            return self.flush()
        self.stats.packets += 1
        t = self.seconds(packet.pts if packet.pts is not None else packet.dts)
        if packet.is_keyframe and t is not None:
            self._note_keyframe(t)
        if self.stats.keyframes_only:
            if not packet.is_keyframe or (t is not None and not self.is_due(t)):
                return []  # dropped before decoding: the whole point of this mode
            self._drop_held()  # a newer due key frame: the one held is stale either way
            if hold:
                self.stats.held += 1
                if t is not None:
                    self._taken(t)
                self.held = packet
                return []
            return self._decode_alone(packet)
        self._drop_held()  # key frames came too far apart to decode alone after all
        return self._decode(packet)

    def rewind(self) -> None:
        """The stream starts again from its beginning (a file played again): the sampling grid
        starts afresh; what was learned about the key-frame spacing is kept."""
        self._drop_held()
        self._due = self._last_key_t = self._last_t = None

    def release(self) -> list[Sample]:
        """Decode the held key frame, if any: its sample, whatever the time now."""
        packet, self.held = self.held, None
        return self._decode_alone(packet, due=False) if packet is not None else []

    def _drop_held(self) -> None:
        if self.held is not None:
            self.held = None
            self.stats.superseded += 1

    def _decode_alone(self, packet: av.Packet, due: bool = True) -> list[Sample]:
        # A lone key frame is drained at once, or the decoder's reorder delay
        # would hold it back until the next one, an interval late.
        ctx = self._lone_decoder()
        return self._decode(packet, due=due, ctx=ctx) + self._decode(None, reset=True, due=due, ctx=ctx)

    def _lone_decoder(self):
        if self.deblock:
            return self.ctx
        if self._lone_ctx is None:
            # A decoder of our own: the stream's may already be open, and options apply only
            # when a decoder opens. The parameter sets come from the stream's extradata (or in
            # band, with each key frame).
            ctx = av.CodecContext.create(self.ctx.name, "r")
            if self.ctx.extradata:
                ctx.extradata = self.ctx.extradata
            ctx.thread_type, ctx.thread_count = self.ctx.thread_type, self.ctx.thread_count
            ctx.options = {"skip_loop_filter": "all"}
            self._lone_ctx = ctx
        return self._lone_ctx

    def flush(self) -> list[Sample]:
        return self.release() + self._decode(None, reset=True)

    def _decode(self, packet: av.Packet | None, reset: bool = False, due: bool = True, ctx=None) -> list[Sample]:
        ctx = self.ctx if ctx is None else ctx
        if packet is not None:
            self.stats.sent += 1
        t0 = time.thread_time()
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError:
            # One damaged packet costs at most its GOP, not the stream.
            self.stats.corrupt += 1
            frames = []
        if reset:
            ctx.flush_buffers()
        self.stats.decode_s += time.thread_time() - t0
        out = []
        for vf in frames:
            self.stats.decoded += 1
            t = self.seconds(vf.pts)
            if t is None:  # no timestamps: count frames instead
                t = 0.0 if self._last_t is None else self._last_t + self._frame_s
            self._last_t = t
            if not due:  # a held key frame: its place on the grid was taken when it came
                out.append(self._convert(vf, t))
            elif self.is_due(t):
                self._taken(t)
                out.append(self._convert(vf, t))
        return out

    def _convert(self, vf: av.VideoFrame, t: float) -> Sample:
        src = (vf.width, vf.height)
        size = self._sizes.get(src)
        if size is None:
            size = self._sizes[src] = sample_size(*src, self.max_side)
        # Scale and convert in one swscale pass: no full-size BGR copy is ever made.
        t0 = time.thread_time()
        image = vf.to_ndarray(width=size[0], height=size[1], format="bgr24", interpolation="AREA")
        self.stats.convert_s += time.thread_time() - t0
        self.stats.samples += 1
        return Sample(image=image, t=t, keyframe=bool(vf.key_frame), source_size=src)


# ---------------------------------------------------------------- files


def iter_packets(container: av.container.InputContainer, stream, stats: SampleStats) -> Iterator[av.Packet]:
    """The stream's packets; a damaged stretch of the container is skipped, not fatal."""
    errors = 0
    while True:
        try:
            for packet in container.demux(stream):
                errors = 0
                yield packet
            return
        except av.FFmpegError:
            errors += 1
            stats.corrupt += 1
            if errors >= _MAX_DEMUX_ERRORS:
                return


def iter_file_samples(
    path: str | Path,
    interval_s: float,
    max_side: int = 640,
    keyframes_only: bool | None = None,
    source_id: str = "file",
    stats: SampleStats | None = None,
) -> Iterator[Frame]:
    """Samples of a recorded video, as fast as it decodes.

    `ts` is the presentation time in seconds from the start of the file. Damaged
    packets are counted in `stats.corrupt` and skipped. Raises `SourceError` for
    a missing or unreadable file, one without video, and - after yielding what
    could be read - for a file that stops well short of its declared duration.
    """
    path = local_path(str(path))
    stats = stats if stats is not None else SampleStats()
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"  # throughput matters for files, latency does not
        sampler = Sampler(stream, interval_s, max_side, keyframes_only, stats)
        index = 0
        end_t = None  # latest presentation time read, to notice a cut-off file
        for packet in iter_packets(container, stream, stats):
            if packet.size and packet.pts is not None:
                end_t = max(end_t or 0.0, sampler.seconds(packet.pts))
            for s in sampler.push(packet):
                yield Frame(source_id, s.t, s.image, index=index, source_size=s.source_size, keyframe=s.keyframe)
                index += 1
        for s in sampler.flush():
            yield Frame(source_id, s.t, s.image, index=index, source_size=s.source_size, keyframe=s.keyframe)
            index += 1
        declared = _duration(container, stream)
    finally:
        container.close()
    if declared is not None and (end_t or 0.0) + _TRUNCATION_SLACK_S < declared:
        read = end_t or 0.0
        raise SourceError(f"{path} is truncated: its video stops at {read:.1f} s of {declared:.1f} s")
