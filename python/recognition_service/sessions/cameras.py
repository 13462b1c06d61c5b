"""The camera seam: opens RTSP/HTTP/file sources with FFmpeg (PyAV), decodes only what is used, keeps the newest.

Why PyAV and not OpenCV's VideoCapture: a camera asked for one frame a second out of ten must not decode
the other nine. VideoCapture decodes every frame it grabs (FFmpeg needs each H.264 frame to decode the
next), so 16 cameras at 10 frames/s spent a third of a 2-core box decoding frames nobody looked at.
PyAV gives the packets before decoding: when the stream's keyframes come at least as often as the
camera is asked for a frame, only the newest keyframe is decoded, and only when asked (an MJPEG camera,
where every frame is a keyframe, decodes one JPEG per frame asked). README "Placing a classroom camera"
says which keyframe interval to set on a camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import av
import numpy as np

from recognition_service import metrics

log = logging.getLogger(__name__)

# FFmpeg options for every camera:
# - RTSP over TCP: interleaved on the control connection, so no lost UDP packets and no firewall holes.
# - No HTTP redirects: FFmpeg would follow them to addresses egress.py never checked (SSRF).
# - Only camera and video containers: playlists (HLS, DASH, concat) name further URLs that are never
#   checked either, so their demuxers are off; so is every protocol a camera does not use.
# A site's own options (CAMERA_FFMPEG_OPTIONS) are kept, but cannot loosen these: ours are applied last.
SAFE_CAPTURE_OPTIONS = {
    "rtsp_transport": "tcp",
    "max_redirects": "0",
    "protocol_whitelist": "file,http,https,tcp,tls,rtsp,rtsps,rtp,srtp,udp",
    "format_whitelist": "rtsp,mpjpeg,mjpeg,jpeg_pipe,mov,matroska,avi,mpegts,flv,h264,hevc,asf,mpeg",
}
# Keyframes are decoded alone when they come at most this much further apart than the frames asked for
# (a live stream's keyframes arrive with jitter; a frame a quarter-interval older does not matter to attendance).
KEYFRAME_SLACK = 1.25


def capture_options(site_options: str | None) -> dict[str, str]:
    """FFmpeg's options for a camera: the site's ("key;value|key;value"), then ours, which win."""
    pairs = [p.split(";", 1) for p in (site_options or "").split("|") if ";" in p]
    return {**{k: v for k, v in pairs if k not in SAFE_CAPTURE_OPTIONS}, **SAFE_CAPTURE_OPTIONS}


def is_file_source(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def open_stream(url: str, open_timeout_s: float, read_timeout_s: float, site_options: str | None = None):
    """An opened container (PyAV); opening and every read give up after the timeouts. Raises av.FFmpegError."""
    source = url[len("file://"):] if url.startswith("file://") else url
    return av.open(source, options=capture_options(site_options), timeout=(open_timeout_s, read_timeout_s))


def read_one_frame(url: str, timeout_s: float = 5.0, site_options: str | None = None) -> np.ndarray | None:
    """The first decodable frame of a source as BGR, or None when it cannot be opened or read."""
    try:
        with open_stream(url, timeout_s, timeout_s, site_options) as container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="bgr24")
    except (av.FFmpegError, OSError, IndexError):  # IndexError: no video stream
        return None
    return None


class KeyframeClock:
    """How far apart a stream's keyframes come (seconds of stream time over the last few), and whether
    decoding keyframes alone still gives a frame at least every `every_s`.

    Stream time (the packets' timestamps), not the time they were read: a reader that falls behind on a
    loaded machine reads keyframes further apart than they were sent, would then decode every frame, and
    fall further behind."""

    def __init__(self, every_s: float, keep: int = 3):
        self.every_s = every_s
        self._times: deque[float] = deque(maxlen=keep + 1)

    def keyframe(self, at: float) -> None:
        self._times.append(at)

    @property
    def interval_s(self) -> float | None:
        """The longest gap between the recent keyframes (None until two have come)."""
        t = list(self._times)
        return max(b - a for a, b in zip(t, t[1:])) if len(t) >= 2 else None

    def since_last(self, now: float) -> float:
        return now - self._times[-1] if self._times else float("inf")

    def keyframes_suffice(self, now: float | None) -> bool:
        """Whether decoding keyframes alone is enough. Hoped so until shown otherwise (one keyframe seen, the
        next not overdue): a new camera decoding every frame until its second keyframe costs little alone,
        but 32 4K cameras starting together spent their first minutes decoding frames nobody asked for."""
        gap = self.interval_s
        return (self.every_s > 0 and bool(self._times) and (gap is None or gap <= self.every_s * KEYFRAME_SLACK)
                and (now is None or self.since_last(now) <= self.every_s * KEYFRAME_SLACK))


def stream_time(packet) -> float | None:
    """When the packet is to be shown, in seconds of the stream's clock (None: it does not say)."""
    if packet.pts is not None and packet.time_base:
        return float(packet.pts * packet.time_base)
    return None


class FrameGrabber:
    """Reads a source on its own thread, keeping only the newest picture, and reports open/read outcomes.

    `on_event(kind, error)` is called with ("opened", None), ("frame", None) for the first decoded frame of
    each connection, and ("failed", message) for each failed open or lost stream; the grabber then waits
    `next_delay()` seconds (the owner's backoff) and tries again until stopped. A file is played at its
    own frame rate and starts again at its end, like a camera that never stops.

    Every packet of the stream is read (a live stream must be drained). What is decoded depends on the
    stream and on `every_s`, how often the consumer wants a frame:
    - keyframes at least every `every_s` (an MJPEG camera; an H.264 camera with a short keyframe interval):
      the newest keyframe packet is kept and decoded only when asked for (`newest`), on the asking thread;
      the frames between keyframes are never decoded.
    - otherwise every packet is decoded here (H.264 needs the frames before), and the newest picture is
      converted to a BGR array only when asked for.
    The mode is re-judged at every keyframe, so a camera reconfigured mid-session follows.
    """

    def __init__(self, url: str, *, open_timeout_s: float, read_timeout_s: float, on_event, next_delay, name: str,
                 check=None, every_s: float = 0.0, site_options: str | None = None):
        self.url = url
        self._check = check  # raises (with .message) when the URL may no longer be reached
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._site_options = site_options
        self._on_event = on_event
        self._next_delay = next_delay
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._decoder_lock = threading.Lock()  # the codec is used by the reader, or by `newest` in keyframe mode
        self._newest = None  # ("frame", av.VideoFrame) or ("packet", av.Packet, codec context): not yet an array
        self._open_codec = None  # the codec of the open connection (a packet of a closed one is not decoded)
        self._seq = 0
        self.clock = KeyframeClock(every_s)
        self.source_fps: float | None = None  # what the stream says it sends (None: it does not say)
        self.keyframes_only = False  # decoding keyframes alone (see above)
        self.packets = 0     # packets read
        self.decoded = 0     # pictures decoded
        self.converted = 0   # pictures converted to arrays for the consumer
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def keyframe_interval_s(self) -> float | None:
        return self.clock.interval_s

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def newest(self, after_seq: int, timeout: float) -> tuple[np.ndarray | None, int]:
        """The newest picture as a BGR array if it is newer than `after_seq` (waiting up to `timeout`), with
        its number. The decoding (keyframe mode) and the conversion happen here, on the asking thread."""
        with self._cond:
            if self._seq <= after_seq and not self._stop.is_set():
                self._cond.wait(timeout)
            if self._seq <= after_seq or self._newest is None:
                return None, after_seq
            newest, seq = self._newest, self._seq
        picture = newest[1] if newest[0] == "frame" else self._decode(newest[2], newest[1], alone=True)
        if picture is None:
            return None, after_seq
        array = picture.to_ndarray(format="bgr24")
        with self._cond:
            self.converted += 1
        return array, seq

    def _offer(self, item) -> None:
        with self._cond:
            self._newest = item
            self._seq += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            error = self._session()
            if self._stop.is_set():
                break
            if error is not None:
                self._on_event("failed", error)
                self._stop.wait(self._next_delay())

    def _session(self) -> str | None:
        """One connection: open, read until the stream ends; return why it ended (None: file looped)."""
        if self._check is not None:
            try:
                self._check(self.url)
            except Exception as exc:  # noqa: BLE001 - refused now (e.g. the name resolves elsewhere)
                return getattr(exc, "message", str(exc))
        try:
            container = open_stream(self.url, self._open_timeout_s, self._read_timeout_s, self._site_options)
        except (av.FFmpegError, OSError) as exc:
            log.debug("%s: open failed: %s", self.url, exc)
            return "could not open the stream"
        try:
            if not container.streams.video:
                return "the stream has no video"
            self._on_event("opened", None)
            return self._read(container)
        finally:
            with self._cond:
                self._newest = None  # a packet or picture of a closed decoder must not be decoded or kept
            with self._decoder_lock:
                self._open_codec = None
                container.close()

    def _read(self, container) -> str | None:
        stream = container.streams.video[0]
        codec = stream.codec_context
        self._open_codec = codec
        codec.thread_count = 1  # many cameras per process: one thread each decodes with the least overhead
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        self.source_fps = fps if 0 < fps <= 240 else None
        is_file = is_file_source(self.url)
        period = 1.0 / fps if is_file and self.source_fps else 0.0
        if not is_file:  # a file playing again has the same keyframes: no second of decoding everything
            self.clock = KeyframeClock(self.clock.every_s)
        next_at = time.monotonic()
        decoded_any, synced = False, False  # synced: the decoder has been fed from a keyframe on
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return None
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                self.packets += 1
                metrics.CAMERA_PACKETS.inc()
                now = stream_time(packet)
                suffice = False
                if packet.is_keyframe:
                    if now is not None:
                        self.clock.keyframe(now)
                    suffice = self.clock.keyframes_suffice(now)
                    self.keyframes_only = decoded_any and suffice
                    if self.keyframes_only:
                        synced = False  # the decoder skips the next frames: resync at a keyframe to leave this mode
                        self._offer(("packet", packet, codec))
                    else:
                        synced = True
                elif (self.keyframes_only and now is not None
                      and self.clock.since_last(now) > self.clock.every_s * KEYFRAME_SLACK):
                    self.keyframes_only = False  # keyframes stopped coming often enough; decode from the next one
                if not self.keyframes_only and (synced or not decoded_any):
                    picture = self._decode(codec, packet)
                    if picture is not None:
                        self._offer(("frame", picture))
                        if not decoded_any:
                            decoded_any = True
                            self._on_event("frame", None)
                            if suffice:  # a file playing again: its keyframes are known to be enough
                                self.keyframes_only, synced = True, False
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        next_at = time.monotonic()
        except (av.FFmpegError, OSError) as exc:
            log.debug("%s: read failed: %s", self.url, exc)
            if self._stop.is_set():
                return None
            return "stream ended or timed out" if decoded_any else "no frame received"
        if is_file and decoded_any:
            return None  # end of file: play it again
        return "stream ended" if decoded_any else "no frame received"

    def _decode(self, codec, packet, *, alone: bool = False):
        """The newest picture a packet gives (None: none yet, or damaged: the next ones may decode). `alone`:
        a keyframe decoded by itself on the asking thread, by a codec that may have been closed since."""
        with self._decoder_lock:
            if alone and codec is not self._open_codec:
                return None
            try:
                frames = codec.decode(packet)
                if alone and not frames:  # a decoder that holds frames back (B-frames): drain it, then reset it
                    frames = codec.decode(None)
                    codec.flush_buffers()
            except av.FFmpegError as exc:
                log.debug("%s: packet not decodable: %s", self.url, exc)
                return None
        self.decoded += len(frames)
        metrics.CAMERA_DECODED.labels("keyframe_alone" if alone else "every_frame").inc(len(frames))
        return frames[-1] if frames else None
