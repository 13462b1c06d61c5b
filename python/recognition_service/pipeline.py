"""Detect, align and embed the faces of a decoded image."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from .images import DecodedImage, decode_image
from .model import FaceModel
from .quality import Quality, measure

# insightface's aligner calls a scikit-image method that warns it is deprecated, on every call.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")
from insightface.utils.face_align import norm_crop  # noqa: E402

PAD_RATIO = 0.4  # border added on each side when nothing was found: a face filling the frame becomes detectable


@dataclass
class DetectedFace:
    """One face in original image coordinates, with its L2-normalised embedding (or None)."""

    bbox: list[float]
    det_score: float
    landmarks: list[list[float]]
    embedding: np.ndarray | None
    quality: Quality | None = None

    @property
    def area(self) -> float:
        return max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1])

    @property
    def min_side(self) -> float:
        return min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])


def detect_faces(model: FaceModel, bgr: np.ndarray, det_size: int, deadline=None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and landmarks in `bgr`'s pixels; a tight portrait is retried on a padded canvas.

    The canvas pads a copy already scaled to det_size: the detector would shrink the padded image to
    det_size anyway, so it sees the same pixels, and the retry costs a few MB whatever the image size.
    """
    boxes, kps = model.detect(bgr, det_size, deadline)
    if len(boxes):
        return boxes, kps
    h, w = bgr.shape[:2]
    scale = min(1.0, det_size / max(h, w))
    small = bgr if scale == 1.0 else cv2.resize(
        bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    pad = int(round(max(small.shape[:2]) * PAD_RATIO))
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    del small
    try:
        if deadline is not None:
            deadline.check("detect")
        boxes, kps = model.detect(padded, det_size, deadline)
    finally:
        del padded
    if len(boxes):
        boxes = boxes.copy()
        boxes[:, :4] = (boxes[:, :4] - pad) / scale
        kps = (kps - pad) / scale
    return boxes, kps


def analyse(model: FaceModel, image: DecodedImage, det_size: int, *, embed: bool = True,
            timings: dict | None = None, deadline=None, with_quality: bool = False) -> list[DetectedFace]:
    """All faces of the image, largest first; `timings` receives detect_ms and embed_ms."""
    t0 = time.perf_counter()
    boxes, kps = detect_faces(model, image.bgr, det_size, deadline)
    t1 = time.perf_counter()
    embeddings, qualities = None, None
    if embed and len(boxes):
        crops = [norm_crop(image.bgr, landmark=k, image_size=112) for k in kps]
        try:
            if deadline is not None:
                deadline.check("align")
            embeddings = model.embed(crops, deadline)
            if with_quality:
                qualities = [measure(k * image.scale, c) for k, c in zip(kps, crops, strict=True)]
        finally:
            del crops
    t2 = time.perf_counter()
    if timings is not None:
        timings["detect_ms"] = round((t1 - t0) * 1000, 2)
        timings["embed_ms"] = round((t2 - t1) * 1000, 2)
    s = image.scale
    faces = [
        DetectedFace(
            bbox=[round(float(v) * s, 1) for v in boxes[i, :4]],
            det_score=round(float(boxes[i, 4]), 4),
            landmarks=[[round(float(x) * s, 1), round(float(y) * s, 1)] for x, y in kps[i]],
            embedding=None if embeddings is None else embeddings[i],
            quality=None if qualities is None else qualities[i],
        )
        for i in range(len(boxes))
    ]
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def analyse_bytes(model: FaceModel, data: bytes, settings, *, embed: bool = True, timings: dict | None = None,
                  deadline=None, with_quality: bool = False) -> tuple[list[DetectedFace], tuple[int, int]]:
    """Decode an upload and analyse it; return the faces and the (width, height) of the photo."""
    t0 = time.perf_counter()
    image = decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.DECODE_MAX_SIDE)
    try:
        if timings is not None:
            timings["decode_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if deadline is not None:
            deadline.check("decode")
        faces = analyse(model, image, settings.DET_SIZE, embed=embed, timings=timings, deadline=deadline,
                        with_quality=with_quality)
        return faces, (image.width, image.height)
    finally:
        image.bgr = None
        del image
