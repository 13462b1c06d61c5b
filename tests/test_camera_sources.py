"""What FFmpeg may open for a camera: real MJPEG, RTSP and file sources, but no redirect or playlist hops."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from devtools.streams import MjpegCamera, RtspCamera, build_video
from recognition_service.sessions.cameras import capture_options, read_one_frame


class WebServer:
    """Answers every GET with `status`, a Location header and/or a body; counts the requests."""

    def __init__(self, status=200, location=None, body=b"", content_type="application/vnd.apple.mpegurl"):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits += 1
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _reads_a_frame(url: str) -> bool:
    return read_one_frame(url, 5) is not None


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return build_video(tmp_path_factory.mktemp("video") / "classroom.mp4", seconds_per_still=0.5)


@pytest.fixture
def mjpeg():
    camera = MjpegCamera()
    yield camera
    camera.stop()


@pytest.mark.parametrize("status", [301, 302, 307])
def test_an_http_camera_redirect_is_not_followed(mjpeg, status):
    # the "elsewhere" is a real stream, so following the redirect would have opened it
    redirector = WebServer(status=status, location=mjpeg.url)
    try:
        assert not _reads_a_frame(redirector.url + "/video.mjpg")
        assert redirector.hits == 1 and mjpeg.requests == 0
    finally:
        redirector.close()


def test_playlists_naming_other_addresses_are_not_opened(tmp_path):
    target = WebServer(body=b"\x47" * 188 * 10, content_type="video/mp2t")
    playlist = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                f"#EXTINF:2.0,\n{target.url}/segment0.ts\n#EXT-X-ENDLIST\n").encode()
    served = WebServer(body=playlist)
    try:
        file_playlist = tmp_path / "cam.m3u8"
        file_playlist.write_bytes(playlist)
        assert not _reads_a_frame(str(file_playlist))
        assert not _reads_a_frame(served.url + "/live/cam.m3u8")
        assert served.hits == 1 and target.hits == 0
    finally:
        served.close()
        target.close()


def test_mjpeg_rtsp_and_file_cameras_still_work(mjpeg, video):
    assert _reads_a_frame(mjpeg.url)
    assert _reads_a_frame(str(video))
    rtsp = RtspCamera(video).start()
    try:
        assert _reads_a_frame(rtsp.url)
    finally:
        rtsp.stop()


def test_site_options_are_kept_but_cannot_loosen_the_safe_ones():
    options = capture_options("stimeout;5000000|max_redirects;5")
    assert options["stimeout"] == "5000000"
    assert options["max_redirects"] == "0" and "hls" not in options["format_whitelist"]


def test_a_fifo_is_not_a_camera_and_never_blocks_a_reader(tmp_path):
    from recognition_service.security.egress import RefusedAddress, check_camera_url
    from recognition_service.sessions.cameras import FrameGrabber

    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    with pytest.raises(RefusedAddress, match="not a regular file"):
        check_camera_url(str(fifo), None, tmp_path)
    events = []
    grabber = FrameGrabber(str(fifo), open_timeout_s=2, read_timeout_s=2, on_event=lambda *e: events.append(e),
                           next_delay=lambda: 0.2, name="fifo-test",
                           check=lambda u: check_camera_url(u, None, tmp_path))
    grabber.start()
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    grabber.stop()
    assert grabber.join(5), "the reader thread is stuck"
    assert events and events[0][0] == "failed" and "not a regular file" in events[0][1]


def test_only_the_frames_asked_for_are_converted(video):
    """A 10 frames/s file read for 3 s, a consumer taking one frame a second: every frame is read (the
    stream is drained, played at its rate), about one in ten becomes an array, and each taken frame is
    fresh (converted after it was asked for)."""
    from recognition_service.sessions.cameras import FrameGrabber

    events = []
    grabber = FrameGrabber(str(video), open_timeout_s=5, read_timeout_s=5, on_event=lambda *e: events.append(e),
                           next_delay=lambda: 0.2, name="grab-test")
    grabber.start()
    try:
        seq, taken = 0, 0
        for _ in range(3):
            frame, newer = grabber.newest(seq, timeout=2.0)
            assert frame is not None and newer > seq
            seq, taken = newer, taken + 1
            time.sleep(1.0)
    finally:
        grabber.stop()
        assert grabber.join(5)
    assert ("frame", None) in events and taken == 3
    assert grabber.converted <= taken + 2, grabber.converted  # the first frame of a connection, and those asked



def test_keyframes_are_decoded_alone_only_when_they_come_as_often_as_frames_are_asked_for(tmp_path):
    """A 1080p H.264 file at 10 frames/s with a keyframe a second: asked for a frame a second, the reader
    decodes little more than the keyframes (each on the asking thread); asked every 0.5 s, every frame."""
    from devtools.streams import still_frames, write_video
    from recognition_service.sessions.cameras import FrameGrabber

    video = write_video(tmp_path / "gop10.mp4", [(still_frames((1920, 1080))[0], 60)], noise=2.0,
                        keyframe_every=10)
    outcome = {}
    for every in (1.0, 0.5):
        grabber = FrameGrabber(str(video), open_timeout_s=5, read_timeout_s=5, on_event=lambda *e: None,
                               next_delay=lambda: 0.2, name="gop-test", every_s=every)
        grabber.start()
        try:
            seq = 0
            for _ in range(4):
                frame, seq = grabber.newest(seq, timeout=2.0)
                assert frame is not None and frame.shape == (1080, 1920, 3)
                time.sleep(every)
        finally:
            grabber.stop()
            assert grabber.join(5)
        outcome[every] = (grabber.keyframes_only, grabber.keyframe_interval_s, grabber.packets, grabber.decoded)
    keyframes_only, interval, packets, decoded = outcome[1.0]
    assert keyframes_only and interval == pytest.approx(1.0) and decoded <= packets / 2, outcome
    keyframes_only, interval, packets, decoded = outcome[0.5]
    # keyframes alone until the first second shows they are too rare, then every frame from the next keyframe
    assert not keyframes_only and interval == pytest.approx(1.0) and decoded >= packets - 10, outcome


def test_the_keyframe_interval_is_judged_in_stream_time():
    """A reader that falls behind reads keyframes late; the stream's own clock still says one a second."""
    from recognition_service.sessions.cameras import KeyframeClock

    clock = KeyframeClock(every_s=1.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        clock.keyframe(t)
    assert clock.interval_s == pytest.approx(1.0) and clock.keyframes_suffice(3.1)
    assert not clock.keyframes_suffice(4.5)  # the next keyframe is overdue: decode every frame again
    slow = KeyframeClock(every_s=1.0)
    for t in (0.0, 2.0, 4.0):
        slow.keyframe(t)
    assert not slow.keyframes_suffice(4.1) and KeyframeClock(every_s=0).keyframes_suffice(0.0) is False
    # a new stream: keyframes alone are hoped enough after the first one, until the second is overdue
    new = KeyframeClock(every_s=1.0)
    assert not new.keyframes_suffice(0.0)
    new.keyframe(0.0)
    assert new.keyframes_suffice(0.9) and not new.keyframes_suffice(1.3)
