"""A looping RTSP camera for tests: GStreamer's RTSP server on loopback (run with Debian's /usr/bin/python3).

usage: rtsp_server.py VIDEO PORT FPS [KBIT_PER_S]   ->   rtsp://127.0.0.1:PORT/cam
(KBIT_PER_S: the H.264 bit rate, default x264's 2048; a 1080p IP camera sends about 4000 to 8000)
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

source, port, fps = sys.argv[1], sys.argv[2], int(round(float(sys.argv[3])))
bitrate = f" bitrate={int(sys.argv[4])}" if len(sys.argv) > 4 else ""
Gst.init(None)

# The video is cut once into JPEG frames, which multifilesrc loops for ever (an MP4's demuxer ends at the
# end of the file, so the camera would hang up at every loop); the served stream is encoded live as H.264
# with a keyframe a second, with fresh, steady timestamps across loops.
frames = source + ".frames"
os.makedirs(frames, exist_ok=True)
cut = Gst.parse_launch(f"filesrc location={source} ! decodebin ! videoconvert ! jpegenc quality=95 ! "
                       f"multifilesink location={frames}/%06d.jpg")
cut.set_state(Gst.State.PLAYING)
message = cut.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
cut.set_state(Gst.State.NULL)
if message is None or message.type != Gst.MessageType.EOS:
    sys.exit(f"could not cut {source} into frames: {message.parse_error() if message else 'timeout'}")
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( multifilesrc location={frames}/%06d.jpg loop=true caps=image/jpeg,framerate={fps}/1 ! jpegdec ! "
    f"videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps}{bitrate} ! "
    f"rtph264pay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"rtsp://127.0.0.1:{port}/cam", flush=True)
GLib.MainLoop().run()
