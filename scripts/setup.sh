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
fi
headless=$(grep -E '^opencv-python-headless==' requirements.txt)
.venv/bin/python -m pip uninstall --quiet --yes opencv-python opencv-python-headless
.venv/bin/python -m pip install --quiet --no-deps "$headless"
.venv/bin/python -c "import cv2, onnxruntime, insightface; print('ready: cv2', cv2.__version__, '/ onnxruntime', onnxruntime.__version__)"
