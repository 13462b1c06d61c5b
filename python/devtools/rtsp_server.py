"""A looping RTSP camera for tests: GStreamer's RTSP server on loopback (run with Debian's /usr/bin/python3).

usage: rtsp_server.py VIDEO PORT [KBIT_PER_S]   ->   rtsp://127.0.0.1:PORT/cam
(KBIT_PER_S: the H.264 bit rate, default x264's 2048; a 1080p IP camera sends about 4000 to 8000)
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

source, port = sys.argv[1], sys.argv[2]
bitrate = f" bitrate={int(sys.argv[3])}" if len(sys.argv) > 3 else ""
Gst.init(None)

# multifilesrc feeds qtdemux in push mode, which needs the index (moov) before the data: transcode the
# source once into an H.264 MP4 with the index first.
video = source + ".faststart.mp4"
remux = Gst.parse_launch(f"filesrc location={source} ! decodebin ! videoconvert ! x264enc speed-preset=ultrafast "
                         f"key-int-max=10 ! h264parse ! mp4mux faststart=true ! filesink location={video}")
remux.set_state(Gst.State.PLAYING)
message = remux.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
remux.set_state(Gst.State.NULL)
if message is None or message.type != Gst.MessageType.EOS:
    sys.exit(f"could not remux {source}: {message.parse_error() if message else 'timeout'}")
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( multifilesrc location={video} loop=true ! qtdemux ! decodebin ! videoconvert ! "
    f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10{bitrate} ! rtph264pay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"rtsp://127.0.0.1:{port}/cam", flush=True)
GLib.MainLoop().run()
