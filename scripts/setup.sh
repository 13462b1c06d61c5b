#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements; `--dev` adds the test tools.
# insightface pulls in opencv-python; both it and opencv-python-headless install into
# the same cv2 folder, so the GUI build is removed and the headless one reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  # The session tests' RTSP camera: GStreamer's RTSP server, driven by Debian's python3 (gi bindings);
  # nginx for the reverse-proxy tests (tests/test_proxy.py runs deploy/nginx/recognizer.conf).
  gst_packages="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi python3-gst-1.0 gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav nginx-light"
  # shellcheck disable=SC2086
  if ! dpkg -s $gst_packages >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    # Installing nginx must not start it on port 80: the tests start their own on free ports.
    no_start=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
      no_start=1
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $gst_packages >/dev/null
    if [ -n "$no_start" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
  fi
fi
headless=$(grep -E '^opencv-python-headless==' requirements.txt)
.venv/bin/python -m pip uninstall --quiet --yes opencv-python opencv-python-headless
.venv/bin/python -m pip install --quiet --no-deps "$headless"
.venv/bin/python -c "import cv2, onnxruntime, insightface; print('ready: cv2', cv2.__version__, '/ onnxruntime', onnxruntime.__version__)"
