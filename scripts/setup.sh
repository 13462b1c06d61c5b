#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements; `--dev` adds the test tools and the Debian packages
# the tests need. The Python side (venv, pip, exactly one headless OpenCV) is python/bootstrap.py, the same
# code Windows runs. PYTHON picks the interpreter; otherwise the first supported one found is used.
set -euo pipefail
cd "$(dirname "$0")/.."
supported='import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$supported" 2>/dev/null; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ -z "${PYTHON:-}" ] || ! "$PYTHON" -c "$supported" 2>/dev/null; then
  found=$("${PYTHON:-python3}" --version 2>&1 || true)
  found=${found%%$'\n'*}
  echo "setup.sh: error: needs Python 3.12 or 3.11 (found: ${found:-no python3}); install one, or set PYTHON=/path/to/python3.12" >&2
  exit 2
fi
dev=""
if [ "${1:-}" = "--dev" ]; then dev="--dev"; fi
"$PYTHON" python/bootstrap.py --install-only $dev
if [ -n "$dev" ]; then
  # The session tests' RTSP camera: GStreamer's RTSP server, driven by Debian's python3 (gi bindings);
  # nginx for the reverse-proxy tests (tests/test_proxy.py runs deploy/nginx/recognizer.conf); Wine's cmd
  # runs start_recognizer_windows.bat (tests/test_windows_start.py); chromium and its driver for the
  # console's browser tests (tests/test_console.py).
  packages="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi python3-gst-1.0 gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav nginx-light wine wine64
    chromium chromium-driver"
  # shellcheck disable=SC2086
  if ! dpkg -s $packages >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    # Installing nginx must not start it on port 80: the tests start their own on free ports.
    no_start=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
      no_start=1
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
    if [ -n "$no_start" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
  fi
fi
.venv/bin/python -c "import cv2, onnxruntime, insightface; print('ready: cv2', cv2.__version__, '/ onnxruntime', onnxruntime.__version__)"
