#!/usr/bin/env python3
"""Quality scores of real photos and of photos made to fail, to set the enrolment gate's defaults.

Runs the service's own pipeline on every single-face photo of ../shared/faces (identities and the
portraits of group/enroll_*), prints percentiles of each score, then the scores of the same photos
downscaled, blurred, darkened, brightened and rotated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from devtools.shared import FACES, MODEL_PACK
from recognition_service.config import load_settings
from recognition_service.recognition.engine import analyse
from recognition_service.recognition.images import decode_image
from recognition_service.recognition.model import load_face_model

BREAKS = {
    "downscaled": lambda im: cv2.resize(im, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA),
    "blurred": lambda im: cv2.GaussianBlur(im, (0, 0), max(im.shape[:2]) / 60),
    "darkened": lambda im: (im * 0.12).astype(np.uint8),
    "brightened": lambda im: np.clip(im.astype(np.int32) + 200, 0, 255).astype(np.uint8),
    "rotated": lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
}


def photos(limit: int) -> list[Path]:
    found = sorted((FACES / "identities").glob("*/*"))
    found += sorted((FACES / "group").glob("enroll_*/portraits/*/*"))
    return [p for p in found if p.suffix.lower() in (".jpg", ".jpeg", ".png")][:limit]


def scores(model, settings, bgr: np.ndarray) -> dict | None:
    from recognition_service.recognition.images import DecodedImage

    image = DecodedImage(bgr=bgr, width=bgr.shape[1], height=bgr.shape[0], scale=1.0, format="raw")
    faces = analyse(model, image, settings.DET_SIZE, with_quality=True)
    return faces[0].quality.to_dict() if len(faces) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="photos to measure at most (default 1000)")
    parser.add_argument("--report", type=Path, help="also write the survey as JSON here")
    args = parser.parse_args()
    settings = load_settings(MODEL_DIR=str(MODEL_PACK), DATABASE_URL="unused")
    model = load_face_model(MODEL_PACK, threads=2, det_threshold=settings.DET_THRESHOLD, concurrency=1)
    real, broken = [], {k: [] for k in BREAKS}
    for path in photos(args.limit):
        img = decode_image(path.read_bytes(), max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.DECODE_MAX_SIDE)
        q = scores(model, settings, img.bgr)
        if q is None:
            continue
        real.append(q)
        for name, fn in BREAKS.items():
            b = scores(model, settings, np.ascontiguousarray(fn(img.bgr)))
            if b is not None:
                broken[name].append(b)
    keys = list(real[0])
    summary = {"photos": len(real), "real": {k: {p: round(float(np.percentile([abs(q[k]) if k in ("yaw", "roll_deg")
                                                                                  else q[k] for q in real], p)), 2)
                                                 for p in (0.5, 1, 5, 50, 95, 99, 99.5)} for k in keys}}
    for name, items in broken.items():
        summary[name] = {"faces_found": len(items), **{k: round(float(np.median([abs(q[k]) if k in ("yaw", "roll_deg")
                                                                                 else q[k] for q in items])), 2)
                                                       for k in keys}} if items else {"faces_found": 0}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
