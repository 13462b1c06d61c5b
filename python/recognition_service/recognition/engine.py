"""The recognition engine: detect, align, embed and decide who a face is, for uploads and cameras alike."""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from recognition_service.recognition.detection import DetectionSettings, find_faces, run_padded, wanted
from recognition_service.recognition.gallery import Gallery
from recognition_service.recognition.images import DecodedImage, decode_image
from recognition_service.recognition.model import FaceModel
from recognition_service.recognition.quality import Quality, measure
from recognition_service.recognition.thresholds import in_force
from recognition_service.students.store import names_for

# insightface's aligner calls a scikit-image method that warns it is deprecated, on every call.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")
from insightface.utils.face_align import norm_crop  # noqa: E402



@dataclass
class DetectedFace:
    """One face in original image coordinates, with its L2-normalised embedding (or None)."""

    bbox: list[float]
    det_score: float
    landmarks: list[list[float]]
    embedding: np.ndarray | None
    quality: Quality | None = None
    crop: np.ndarray | None = None  # the aligned 112x112 crop, when asked for (kept crops, shadow model)

    @property
    def area(self) -> float:
        return max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1])

    @property
    def min_side(self) -> float:
        return min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])


def detection_for(settings, mode: str | None = None, **camera) -> DetectionSettings:
    """The detection settings of an upload (mode from the request) or a camera (its own mode, ROI, size)."""
    return DetectionSettings(mode=mode or settings.DETECTION_MODE, det_size=settings.DET_SIZE, **camera)


def detect_faces(model: FaceModel, bgr: np.ndarray, detection: DetectionSettings | int,
                 deadline=None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and landmarks in `bgr`'s pixels (recognition/detection.py: the full pass and native tiles);
    when nothing is found, a tight portrait is retried on a padded canvas. An int is a DET_SIZE for the
    full pass alone."""
    if isinstance(detection, int):
        detection = DetectionSettings(mode="full_frame", det_size=detection)
    boxes, kps = find_faces(model, bgr, detection, deadline)
    if len(boxes):
        return boxes, kps
    if deadline is not None:
        deadline.check("detect")
    boxes, kps = run_padded(model, bgr, detection.det_size, deadline)
    h, w = bgr.shape[:2]
    return wanted(boxes, kps, w, h, detection)


def align(bgr: np.ndarray, kps: np.ndarray) -> list[np.ndarray]:
    """The 112x112 aligned crop of each face, as the recogniser was trained on."""
    return [norm_crop(bgr, landmark=k, image_size=112) for k in kps]


def analyse(model: FaceModel, image: DecodedImage, detection: DetectionSettings | int, *, embed: bool = True,
            timings: dict | None = None, deadline=None, with_quality: bool = False,
            keep_crops: bool = False) -> list[DetectedFace]:
    """All faces of the image, largest first; `timings` receives detect_ms and embed_ms."""
    t0 = time.perf_counter()
    boxes, kps = detect_faces(model, image.bgr, detection, deadline)
    t1 = time.perf_counter()
    embeddings, qualities, kept = None, None, None
    if embed and len(boxes):
        crops = align(image.bgr, kps)
        try:
            if deadline is not None:
                deadline.check("align")
            embeddings = model.embed(crops, deadline)
            if with_quality:
                qualities = [measure(k * image.scale, c) for k, c in zip(kps, crops, strict=True)]
            kept = crops if keep_crops else None
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
            crop=None if kept is None else kept[i],
        )
        for i in range(len(boxes))
    ]
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def analyse_bytes(model: FaceModel, data: bytes, settings, *, embed: bool = True, timings: dict | None = None,
                  deadline=None, with_quality: bool = False, keep_crops: bool = False,
                  detection: str | None = None) -> tuple[list[DetectedFace], tuple[int, int]]:
    """Decode an upload and analyse it; return the faces and the (width, height) of the photo.

    `detection`: auto, full_frame or tiled (default DETECTION_MODE). The photo is decoded up to
    DECODE_MAX_SIDE, so a 4000 px class photo is searched at its own resolution by native tiles.
    """
    t0 = time.perf_counter()
    image = decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.DECODE_MAX_SIDE)
    try:
        if timings is not None:
            timings["decode_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if deadline is not None:
            deadline.check("decode")
        faces = analyse(model, image, detection_for(settings, detection), embed=embed, timings=timings,
                        deadline=deadline,
                        with_quality=with_quality, keep_crops=keep_crops)
        return faces, (image.width, image.height)
    finally:
        image.bgr = None
        del image


@dataclass(frozen=True)
class Identity:
    """Who a face (or a track's faces) is: student_id None when not recognised, with the reason."""

    student_id: str | None
    name: str | None
    similarity: float | None
    reason: str | None = None


class RecognitionEngine:
    """The one place that decides "this face is student X", for /recognize, enrolment and cameras.

    Holds what a decision needs (the model provider, the gallery of each model, the database the gallery
    is refreshed from and the settings); callers hand it pixels or embeddings and get plain data back.
    """

    def __init__(self, settings, models, galleries, db, ensure_schema=lambda: None):
        self.settings = settings
        self._models = models          # .get() -> FaceModel (raises ServiceUnavailable while unloaded)
        self._galleries = galleries    # FaceModel -> Gallery
        self._db = db
        self._ensure_schema = ensure_schema
        self._refreshed: dict[str, float] = {}
        self._lock = threading.Lock()

    def model(self) -> FaceModel:
        return self._models.get()

    def threshold(self, model: FaceModel, override: float | None = None) -> float:
        return override if override is not None else in_force(self.settings, model.info)

    def photo(self, model: FaceModel, data: bytes, **kwargs) -> tuple[list[DetectedFace], tuple[int, int]]:
        """The faces of an uploaded photo (decode limits, tight-portrait retry): see analyse_bytes."""
        return analyse_bytes(model, data, self.settings, **kwargs)

    def gallery(self, model: FaceModel, *, max_age_s: float = 0.0) -> Gallery:
        """The model's gallery, refreshed from the database when older than `max_age_s`."""
        gallery = self._galleries(model)
        key = model.info.fingerprint
        now = time.monotonic()
        if now - self._refreshed.get(key, float("-inf")) >= max_age_s:
            self._ensure_schema()
            with self._db.get_db_conn() as conn:
                gallery.refresh(conn)
            with self._lock:
                self._refreshed[key] = now
        return gallery

    def identify(self, model: FaceModel, embeddings: np.ndarray, *, threshold: float | None = None,
                 roster: list[str] | None = None, max_age_s: float = 0.0,
                 face_px: list[float] | None = None) -> list[Identity]:
        """Who each embedding is: the threshold, MATCH_MARGIN and roster rules, with names.

        `max_age_s`: how stale the gallery may be (uploads 0: an enrolment is seen by the next request;
        cameras 1 s: enrolments made during the class are picked up within a second). `face_px`: the size
        of each face when it comes from one frame; one under SMALL_FACE_PX is never named from that frame
        alone (reason face_too_small, its closest similarity kept): camera tracks name small faces from
        several frames instead (sessions/track_decision.py).
        """
        if len(embeddings) == 0:
            return []
        gallery = self.gallery(model, max_age_s=max_age_s)
        matches = gallery.match(np.asarray(embeddings, np.float32), threshold=self.threshold(model, threshold),
                                margin=self.settings.MATCH_MARGIN, roster=roster)
        if face_px is not None:
            small = self.settings.SMALL_FACE_PX
            matches = [replace(m, student_id=None, reason="face_too_small") if px < small and m.student_id else m
                       for m, px in zip(matches, face_px, strict=True)]
        found = {m.student_id for m in matches if m.student_id}
        names = {}
        if found:
            with self._db.get_db_conn() as conn:
                names = names_for(conn, found)
        return [Identity(m.student_id, names.get(m.student_id, m.student_id) if m.student_id else None,
                         m.similarity, m.reason) for m in matches]

    def candidates(self, model: FaceModel, embedding: np.ndarray, *, roster: list[str] | None = None,
                   k: int = 3) -> list[dict]:
        """The k students most like this embedding, best first: what a reviewer chooses from."""
        return [{"student_id": sid, "similarity": sim}
                for sid, sim in self._galleries(model).candidates(embedding, k, roster)]

    def look_alikes(self, model: FaceModel, embedding: np.ndarray, *, student_id: str) -> list[dict]:
        """Other students this face already matches at the threshold in force, best first, with names: an
        enrolment that would make two students of one person (and every later sighting ambiguous)."""
        gallery = self._galleries(model)
        self._ensure_schema()
        with self._db.get_db_conn() as conn:  # fresh: a duplicate enrolled a moment ago counts. Not noted as a
            gallery.refresh(conn)             # refresh (gallery()): the face about to be enrolled is not in it
        # yet, and a camera of this process must not skip its next refresh and miss that face for a second
        threshold = self.threshold(model)
        found = [(sid, sim) for sid, sim in gallery.candidates(np.asarray(embedding, np.float32), 4)
                 if sid != student_id and sim >= threshold]
        if not found:
            return []
        with self._db.get_db_conn() as conn:
            names = names_for(conn, {sid for sid, _ in found})
        return [{"student_id": sid, "name": names.get(sid, sid), "similarity": sim} for sid, sim in found]

    def similarity_to(self, model: FaceModel, embeddings: np.ndarray, student_id: str) -> np.ndarray:
        """Each embedding's similarity to the student's best-matching enrolled face."""
        return self._galleries(model).similarity_to(np.asarray(embeddings, np.float32), student_id)
