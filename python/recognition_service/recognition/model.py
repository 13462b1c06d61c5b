"""The model seam: builds the ONNX Runtime sessions and the InsightFace detector and recogniser."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recognition_service.errors import ModelUnavailable
from recognition_service.recognition.dequantize import dequantize_integer_ops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the service reports about the loaded model."""

    name: str
    path: str
    detector: str
    recognizer: str
    embedding_size: int
    fingerprint: str
    providers: tuple[str, ...]
    load_seconds: float

    def to_dict(self) -> dict:
        return {"name": self.name, "detector": self.detector, "recognizer": self.recognizer,
                "embedding_size": self.embedding_size, "fingerprint": self.fingerprint,
                "providers": list(self.providers)}


@dataclass
class FaceModel:
    """A loaded detector + recogniser pair; `slots` bounds concurrent inference in this process."""

    info: ModelInfo
    detector: object
    recognizer: object
    batch_embeddings: bool
    slots: threading.BoundedSemaphore = field(repr=False)

    def _slot(self, deadline, stage: str):
        """Hold one inference slot; with a deadline, queue no longer than the time left."""
        if deadline is None:
            return self.slots
        deadline.acquire(self.slots, stage)
        return _Held(self.slots)

    def detect(self, bgr: np.ndarray, det_size: int | tuple[int, int],
               deadline=None) -> tuple[np.ndarray, np.ndarray]:
        """Return (N x 5 boxes with scores, N x 5 x 2 landmarks), best score first.

        det_size: the detector's input, a square side or (width, height); the image is scaled to fit it.
        """
        size = (det_size, det_size) if isinstance(det_size, int) else det_size
        with self._slot(deadline, "detect"):
            boxes, kps = self.detector.detect(bgr, input_size=size)
        if kps is None:
            kps = np.zeros((len(boxes), 5, 2), np.float32)
        return boxes, kps

    def embed(self, crops: list[np.ndarray], deadline=None) -> np.ndarray:
        """Embed aligned 112x112 BGR crops; return L2-normalised float32 rows."""
        if not crops:
            return np.zeros((0, self.info.embedding_size), np.float32)
        with self._slot(deadline, "embed"):
            if self.batch_embeddings:
                feats = self.recognizer.get_feat(crops)
            else:
                feats = np.concatenate([self.recognizer.get_feat(c) for c in crops])
        feats = np.asarray(feats, np.float32)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        return feats / np.maximum(norms, 1e-12)


class _Held:
    """Releases an already acquired semaphore on exit."""

    def __init__(self, semaphore):
        self._semaphore = semaphore

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._semaphore.release()


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def _session(path: Path, threads: int, *, dequantize: bool = False):
    """The one place ONNX Runtime sessions are built: explicit thread counts, quiet logs.

    With dequantize, a dynamically quantised graph is first rewritten to float (see dequantize.py).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # batched recognisers warn on every run that the declared batch is 1
    source: str | bytes = str(path)
    if dequantize:
        rewritten = dequantize_integer_ops(str(path))
        if rewritten is not None:
            source = rewritten[0]
            log.info("%s: %d integer ops rewritten to float for speed", path.name, rewritten[1])
    return ort.InferenceSession(source, sess_options=opts, providers=_providers())


def _classify(path: Path) -> str | None:
    """'detection', 'recognition' or None, from the ONNX graph's inputs and outputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    if len(graph.output) >= 5:
        return "detection"
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if len(graph.output) == 1 and len(dims) == 4 and dims[2] == dims[3] == 112:
        return "recognition"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_pack_models(pack: Path) -> dict[str, Path]:
    """The detector and recogniser files of a model pack folder; FileNotFoundError says what is missing."""
    if not pack.is_dir():
        raise FileNotFoundError(f"model folder {pack} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(pack.glob("*.onnx")):
        task = _classify(path)
        if task and task not in found:
            found[task] = path
    missing = [t for t in ("detection", "recognition") if t not in found]
    if missing:
        raise FileNotFoundError(f"model folder {pack} has no {' or '.join(missing)} model (*.onnx)")
    return found


def recognizer_fingerprint(pack: Path) -> tuple[str, str]:
    """(sha256, file name) of a pack's recogniser, without loading it."""
    path = find_pack_models(pack)["recognition"]
    return _sha256(path), path.name


def resolve_model_pack(settings) -> Path:
    """MODEL_DIR, or MODEL_ROOT/models/MODEL_NAME (downloaded by InsightFace when missing and allowed)."""
    path = settings.model_path
    if settings.MODEL_DIR is None and not path.is_dir() and settings.MODEL_DOWNLOAD:
        from insightface.utils.storage import ensure_available

        log.info("model pack %s not found under %s: asking InsightFace to download it",
                 settings.MODEL_NAME, settings.MODEL_ROOT)
        path = Path(ensure_available("models", settings.MODEL_NAME, root=str(settings.MODEL_ROOT.expanduser())))
    return path


def load_face_model(pack: Path, *, threads: int, det_threshold: float, concurrency: int,
                    dequantize: bool = True) -> FaceModel:
    """Load the detector and recogniser of an InsightFace model pack folder (other models are ignored)."""
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    started = time.perf_counter()
    found = find_pack_models(pack)

    det_session = _session(found["detection"], threads)
    detector = SCRFD(model_file=str(found["detection"]), session=det_session)
    # ctx_id 0 keeps the providers chosen above (-1 would rebuild the session for the CPU).
    detector.prepare(0, det_thresh=det_threshold, input_size=(640, 640))
    rec_session = _session(found["recognition"], threads, dequantize=dequantize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recognizer = ArcFaceONNX(model_file=str(found["recognition"]), session=rec_session)
    batch_dim = rec_session.get_inputs()[0].shape[0]
    embedding_size = int(rec_session.get_outputs()[0].shape[1])
    info = ModelInfo(
        name=pack.name, path=str(pack), detector=found["detection"].name,
        recognizer=found["recognition"].name, embedding_size=embedding_size,
        fingerprint=_sha256(found["recognition"]), providers=tuple(rec_session.get_providers()),
        load_seconds=round(time.perf_counter() - started, 3),
    )
    return FaceModel(info=info, detector=detector, recognizer=recognizer,
                     batch_embeddings=not isinstance(batch_dim, int) or batch_dim != 1 or _runs_batched(rec_session),
                     slots=threading.BoundedSemaphore(concurrency))


def _runs_batched(session) -> bool:
    """Some recognisers declare batch 1 but run any batch; try a batch of two once."""
    inp = session.get_inputs()[0]
    try:
        session.run(None, {inp.name: np.zeros((2, 3, 112, 112), np.float32)})
        return True
    except Exception:  # noqa: BLE001 - any failure means: embed one crop at a time
        return False


class ModelProvider:
    """Loads the model once per process under a lock; remembers why it failed and retries later.

    `pack`: a model folder to load instead of the configured model (the shadow model of a model change).
    """

    def __init__(self, settings, on_loaded=None, pack: Path | None = None):
        self._settings = settings
        self._pack = pack
        self._on_loaded = on_loaded
        self._lock = threading.Lock()
        self._model: FaceModel | None = None
        self._error: str | None = None
        self._failed_at = 0.0

    def get(self) -> FaceModel:
        """The loaded model, loading it if needed; raise ModelUnavailable with the reason otherwise."""
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is not None:
                return self._model
            if self._error and time.monotonic() - self._failed_at < self._settings.MODEL_RETRY_S:
                raise ModelUnavailable(f"model not loaded: {self._error}")
            s = self._settings
            try:
                self._model = load_face_model(self._pack or resolve_model_pack(s), threads=s.ort_threads,
                                              det_threshold=s.DET_THRESHOLD, concurrency=s.inference_concurrency,
                                              dequantize=s.MODEL_DEQUANTIZE)
            except Exception as exc:  # noqa: BLE001 - any load failure leaves the service up and degraded
                self._error, self._failed_at = f"{type(exc).__name__}: {exc}", time.monotonic()
                log.error("model could not be loaded: %s", self._error)
                raise ModelUnavailable(f"model not loaded: {self._error}") from exc
            self._error = None
            if self._on_loaded:
                self._on_loaded(self._model.info)
            log.info("model %s loaded in %.2f s (fingerprint %s, %s)", self._model.info.name,
                     self._model.info.load_seconds, self._model.info.fingerprint[:12], self._model.info.providers[0])
            return self._model

    def status(self) -> dict:
        """Loaded model info, or the reason it is not loaded."""
        if self._model is not None:
            return {"loaded": True, **self._model.info.to_dict()}
        return {"loaded": False, "error": self._error or "not loaded yet",
                "path": str(self._pack or self._settings.model_path)}

    @property
    def loaded(self) -> FaceModel | None:
        return self._model
