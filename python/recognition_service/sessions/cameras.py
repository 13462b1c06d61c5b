"""The camera seam: opens RTSP/HTTP/file sources with OpenCV and keeps only the newest frame."""

from __future__ import annotations

import logging
import os
import threading
import time

import cv2
import numpy as np

log = logging.getLogger(__name__)

# FFmpeg options for every capture (OpenCV reads this variable at each open, so it is set once, for all):
# - RTSP over TCP: interleaved on the control connection, so no lost UDP packets and no firewall holes.
# - No HTTP redirects: FFmpeg would follow them to addresses egress.py never checked (SSRF).
# - Only camera and video containers: playlists (HLS, DASH, concat) name further URLs that are never
#   checked either, so their demuxers are off; so is every protocol a camera does not use.
# A site's own options (the same variable) are kept, but cannot loosen these: later keys win.
SAFE_CAPTURE_OPTIONS = {
    "rtsp_transport": "tcp",
    "max_redirects": "0",
    "protocol_whitelist": "file,http,https,tcp,tls,rtsp,rtsps,rtp,srtp,udp",
    "format_whitelist": "rtsp,mpjpeg,mjpeg,jpeg_pipe,mov,matroska,avi,mpegts,flv,h264,hevc,asf,mpeg",
}


def capture_options(site_options: str | None) -> str:
    """The option string for OPENCV_FFMPEG_CAPTURE_OPTIONS ("key;value|key;value"): the site's, then ours."""
    pairs = [p for p in (site_options or "").split("|") if p and p.split(";", 1)[0] not in SAFE_CAPTURE_OPTIONS]
    return "|".join(pairs + [f"{k};{v}" for k, v in SAFE_CAPTURE_OPTIONS.items()])


os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = capture_options(os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS"))


def is_file_source(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def open_capture(url: str, open_timeout_s: float, read_timeout_s: float) -> cv2.VideoCapture:
    """A VideoCapture whose open and every read give up after the timeouts (FFmpeg backend)."""
    source = url[len("file://"):] if url.startswith("file://") else url
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class FrameGrabber:
    """Reads a source on its own thread, keeping only the newest frame, and reports open/read outcomes.

    `on_event(kind, error)` is called with ("opened", None), ("frame", None) for the first frame of each
    connection, and ("failed", message) for each failed open or lost stream; the grabber then waits
    `next_delay()` seconds (the owner's backoff) and tries again until stopped. A file is played at its
    own frame rate and starts again at its end, like a camera that never stops.

    Every frame of the stream is read (a live stream must be drained, and H.264 decodes each frame from
    the previous ones), but only the frames a consumer asks for (`newest`) are converted to BGR arrays:
    with a camera at 10 frames/s processed once a second, 9 frames in 10 skip the colour conversion and
    the copy, about half of the decoding cost (measured: 1080p H.264 4.1 ms read, 2.1 ms grabbed).
    """

    def __init__(self, url: str, *, open_timeout_s: float, read_timeout_s: float, on_event, next_delay, name: str,
                 check=None):
        self.url = url
        self._check = check  # raises (with .message) when the URL may no longer be reached
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._on_event = on_event
        self._next_delay = next_delay
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._wanted = True  # a consumer waits for a frame: convert the next one
        self.source_fps: float | None = None  # what the stream says it sends (None: it does not say)
        self.converted = 0   # frames converted to arrays (the rest were only grabbed)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

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
        """The newest frame if it is newer than `after_seq` (waiting up to `timeout`), with its number.

        Asking is what makes the grabber convert a frame: a frame newer than `after_seq` that is already
        there is returned at once, else the next frame read is converted (at most one frame period)."""
        with self._cond:
            if self._seq <= after_seq and not self._stop.is_set():
                self._wanted = True
                self._cond.wait(timeout)
            if self._seq <= after_seq:
                return None, after_seq
            return self._frame, self._seq

    def _publish(self, frame: np.ndarray) -> None:
        with self._cond:
            self._frame = frame
            self._seq += 1
            self._wanted = False
            self.converted += 1
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
        cap = open_capture(self.url, self._open_timeout_s, self._read_timeout_s)
        try:
            if not cap.isOpened():
                return "could not open the stream"
            self._on_event("opened", None)
            is_file = is_file_source(self.url)
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            self.source_fps = fps if 0 < fps <= 240 else None
            period = 1.0 / fps if is_file and self.source_fps else 0.0
            frames = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                if not cap.grab():
                    if is_file and frames:
                        return None  # end of file: play it again
                    return "stream ended or timed out" if frames else "no frame received"
                if self._wanted or frames == 0:
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        self._publish(frame)
                frames += 1
                if frames == 1:
                    self._on_event("frame", None)
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        next_at = time.monotonic()
            return None
        finally:
            cap.release()
