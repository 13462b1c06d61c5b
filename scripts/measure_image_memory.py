#!/usr/bin/env python3
"""Peak memory one upload adds to a worker: the service's decode + detect + embed on hostile and normal images.

Each image is analysed by the service's own code (pipeline.analyse_bytes with the default settings) in this
process, after a warm-up; the figure is the rise of the process's peak RSS (VmHWM, reset through
/proc/self/clear_refs before each image) above its RSS just before. Linux only. The images are made here
(flat colours, no faces) except the reference group photo from ../shared and a 4K class photo built from
../shared's people.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from devtools.shared import MODEL_PACK, sample
from PIL import Image
from recognition_service.config import load_settings
from recognition_service.errors import ApiError
from recognition_service.recognition.engine import analyse_bytes
from recognition_service.recognition.model import load_face_model


def _encode(size, mode, fmt, **options) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "I;16") else (40, 90, 160, 255)[:len(mode)]).save(buf, fmt, **options)
    return buf.getvalue()


def images() -> dict[str, bytes]:
    return {
        "group photo 1280x853 JPEG (reference)": sample("five_faces.jpg"),
        "2000x20000 PNG, no face": _encode((2000, 20000), "RGB", "PNG"),
        "8000x5000 WebP lossless": _encode((8000, 5000), "RGB", "WEBP", lossless=True),
        "6324x6324 RGBA PNG (40 MP, the pixel limit)": _encode((6324, 6324), "RGBA", "PNG"),
        "6324x6324 16-bit grey PNG": _encode((6324, 6324), "I;16", "PNG"),
        "2000x2000 WebP lossless (largest decoded without queueing)": _encode((2000, 2000), "RGB", "WEBP",
                                                                              lossless=True),
        "8000x5000 JPEG": _encode((8000, 5000), "RGB", "JPEG", quality=30),
        "1414x28280 PNG (aspect 20, the limit)": _encode((1414, 28280), "RGB", "PNG"),
        "3840x2160 class photo JPEG (32 faces, native tiles)": _classroom_4k(),
    }


def _classroom_4k() -> bytes:
    """A 4K class photo of 32 real people in five rows (devtools.classroom): the tiles and 32 embeddings."""
    import cv2
    from devtools.classroom import classroom

    frame, _ = classroom((3840, 2160))
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    settings = load_settings(MODEL_DIR=str(MODEL_PACK))
    model = load_face_model(MODEL_PACK, threads=1, det_threshold=settings.DET_THRESHOLD, concurrency=1)
    made = images()
    for data in made.values():  # warm-up: allocator pools and ONNX Runtime arenas reach their working size
        try:
            analyse_bytes(model, data, settings)
        except ApiError:
            pass
    rows = []
    for name, data in made.items():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status("VmRSS")
        try:
            faces, _ = analyse_bytes(model, data, settings)
            outcome = f"{len(faces)} faces"
        except ApiError as exc:
            outcome = exc.code
        peak = _status("VmHWM") - before
        rows.append({"image": name, "upload_kib": round(len(data) / 1024, 1), "outcome": outcome,
                     "peak_added_mib": round(peak / 2**20, 1)})
        print(f"{name:48s} {len(data) / 1024:9.1f} KiB  {outcome:10s} +{peak / 2**20:7.1f} MiB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
