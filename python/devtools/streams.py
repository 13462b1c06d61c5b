"""Real video sources for session tests: a video file, GStreamer's RTSP server, an HTTP MJPEG server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from devtools.shared import FACES

BBT = FACES / "group" / "enroll_bbt"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi and python3-gst-1.0 live there, not in the venv


def still_frames(size=(960, 540)) -> list[np.ndarray]:
    """The Big Bang Theory stills letterboxed to one size."""
    frames = []
    for path in sorted((BBT / "scenes").glob("*.jpg")):
        img = cv2.imread(str(path))
        h, w = img.shape[:2]
        scale = min(size[0] / w, size[1] / h)
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        y, x = (size[1] - img.shape[0]) // 2, (size[0] - img.shape[1]) // 2
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        frames.append(canvas)
    return frames


def build_video(path: Path, *, fps: int = 10, seconds_per_still: float = 2.0) -> Path:
    """An MP4 (MPEG-4 part 2) showing each still for a while: a classroom camera that cuts between views."""
    frames = still_frames()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV could not open an MP4 writer"
    for frame in frames:
        for _ in range(int(fps * seconds_per_still)):
            writer.write(frame)
    writer.release()
    return path


def face_at(image: np.ndarray, bbox, spot, size) -> np.ndarray:
    """`image` scaled and shifted so its face box `bbox` covers `spot` (x1, y1, x2, y2) of a `size` frame."""
    x1, y1, x2, _ = bbox
    scale = (spot[2] - spot[0]) / max(x2 - x1, 1)
    matrix = np.float32([[scale, 0, spot[0] - x1 * scale], [0, scale, spot[1] - y1 * scale]])
    return cv2.warpAffine(image, matrix, size, borderValue=(40, 40, 40))


def side_by_side(left, right, spots, size) -> np.ndarray:
    """Two people in one frame: (image, face box) each, their faces on spots[0] and spots[1], split mid-frame."""
    frame = face_at(left[0], left[1], spots[0], size)
    other = face_at(right[0], right[1], spots[1], size)
    frame[:, size[0] // 2:] = other[:, size[0] // 2:]
    return frame


def write_video(path: Path, shots: list[tuple[np.ndarray, int]], fps: int = 10, noise: float = 0.0,
                keyframe_every: int | None = None) -> Path:
    """A video of (frame, how many frames) shots; `noise` adds sensor-like grain (sigma, grey levels) per frame.

    `keyframe_every`: H.264 with a keyframe every that many frames (what an IP camera sends; its "I-frame
    interval"), written with PyAV's libx264; None: OpenCV's MPEG-4 (mp4v), whose keyframes it chooses."""
    h, w = shots[0][0].shape[:2]
    rng = np.random.default_rng(0)
    # eight grain patterns in whole grey levels, cycled: grain drawn afresh for every frame of a long 4K video
    # takes minutes, and sixteen float patterns of a 4K frame took 1.6 GB (these take 200 MB)
    grain = [np.clip(np.rint(rng.normal(0, noise, (h, w, 3))), -127, 127).astype(np.int8)
             for _ in range(8)] if noise else []

    def frames():
        n = 0
        for frame, count in shots:
            for _ in range(count):
                if noise:
                    n += 1
                    yield np.clip(frame + grain[n % len(grain)], 0, 255).astype(np.uint8)
                else:
                    yield frame

    if keyframe_every:
        import av

        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps, options={
                "g": str(keyframe_every), "keyint_min": str(keyframe_every), "sc_threshold": "0", "bf": "0",
                "preset": "veryfast", "crf": "20"})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for image in frames():
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            out.mux(stream.encode(None))
        return path
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV could not open an MP4 writer"
    for image in frames():
        writer.write(image)
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def grab(url: str, skip: int = 10, timeout_s: float = 20.0) -> np.ndarray:
    """One decoded frame of a stream after `skip` others (what the camera delivers, compression included)."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000)])
    try:
        frame = None
        for _ in range(skip + 1):
            ok, frame = cap.read()
            assert ok, f"no frame from {url}"
        return frame
    finally:
        cap.release()


class RtspCamera:
    """GStreamer's RTSP server on loopback looping a video, run by the system Python (gi bindings)."""

    def __init__(self, video: Path, port: int | None = None, kbit_per_s: int | None = None):
        self.video, self.port, self.kbit_per_s = video, port or free_port(), kbit_per_s
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspCamera:
        rate = [str(self.kbit_per_s)] if self.kbit_per_s else []
        cap = cv2.VideoCapture(str(self.video))
        fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
        cap.release()
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(self.video), str(self.port), str(fps), *rate],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port, 90)  # the video is cut into frames first
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class MjpegCamera:
    """An HTTP MJPEG stream (multipart/x-mixed-replace) of the stills, like a cheap IP camera."""

    def __init__(self, fps: float = 10.0):
        frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in still_frames()]
        period = 1.0 / fps
        per_still = int(fps * 2)
        self.requests = 0  # how many times a client connected
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while True:
                        jpeg = frames[(i // per_still) % len(frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        i += 1
                        time.sleep(period)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
