"""Tools the tests and the scripts share: real service processes, the ../shared assets, videos, cameras
(file, RTSP, MJPEG) and a callback receiver. Not imported by the service itself."""
