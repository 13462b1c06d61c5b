"""Service configuration: read from the environment (and an optional .env) and validated once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository's data/ folder: the default DATA_DIR wherever a script is started from, so the service, the
# key tool and the scripts always find the same database (a relative DATA_DIR still means the current folder).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the variable."""


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every setting of the service; field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        protected_namespaces=(),
    )

    DATABASE_URL: str | None = None
    DB_POOL_MIN: int = Field(1, ge=0)
    DB_POOL_MAX: int = Field(8, ge=1)
    DB_POOL_TIMEOUT_S: float = Field(5.0, gt=0)
    DB_CONNECT_TIMEOUT_S: int = Field(5, ge=1)
    DB_STATEMENT_TIMEOUT_MS: int = Field(30_000, ge=0)

    MODEL_DIR: Path | None = None
    MODEL_NAME: str = "buffalo_l"
    MODEL_ROOT: Path = Path("~/.insightface")
    MODEL_DOWNLOAD: bool = True
    MODEL_RETRY_S: float = Field(30.0, ge=0)
    MODEL_DEQUANTIZE: bool = True  # run int8 "integer ops" recognisers as float (4x faster on CPU)
    # Changing the model (README "Change the model"): the next model, loaded beside the one in use by every
    # process; kept crops are embedded with it in the background and a sample of recognitions compared.
    SHADOW_MODEL_DIR: Path | None = None
    SHADOW_RECOGNITION_THRESHOLD: float | None = Field(None, ge=-1, le=1)  # default: the shadow model's measured one
    SHADOW_SAMPLE_RATE: float = Field(0.2, ge=0, le=1)  # share of /recognize requests and camera batches also matched
    KEEP_FACE_CROPS: bool = True  # keep each enrolled face's aligned 112x112 crop (false: none, old ones deleted)
    REEMBED_BATCH: int = Field(16, ge=1, le=256)  # crops embedded per transaction
    REEMBED_MAX_FACES_PER_S: float = Field(0.0, ge=0)  # pace of re-embedding beside live traffic; 0: no limit
    REEMBED_POLL_S: float = Field(10.0, gt=0, le=3600)  # how often new crops are looked for
    REEMBED_LEASE_S: float = Field(10.0, ge=2, le=300)  # a dead owner's job resumes elsewhere within this
    DET_SIZE: int = Field(640, ge=160, le=2048)
    # Where faces are looked for (recognition/detection.py): auto = the whole frame at DET_SIZE plus native-
    # resolution tiles when the picture is over 1.5 x DET_SIZE (far faces keep their pixels); full_frame =
    # DET_SIZE only (cheapest, misses faces under ~3% of the frame's width); tiled = always native tiles.
    # Cameras may set their own (sessions API, cameras[].detection); /recognize takes ?detection=.
    DETECTION_MODE: Literal["auto", "full_frame", "tiled"] = "auto"
    DET_THRESHOLD: float = Field(0.5, gt=0, lt=1)
    ORT_THREADS: int | None = Field(None, ge=1, le=64)  # default: CPU cores / WORKERS
    INFERENCE_CONCURRENCY: int | None = Field(None, ge=1, le=64)  # default: cores / ORT threads

    RECOGNITION_THRESHOLD: float | None = Field(None, ge=-1, le=1)  # default: the model's measured one
    MATCH_MARGIN: float = Field(0.03, ge=0, le=1)
    ENROLL_MIN_FACE_PX: int = Field(32, ge=8)
    # Quality gate defaults come from scripts/quality_survey.py on ../shared/faces (docs/quality_survey.json).
    ENROLL_QUALITY_GATE: bool = True
    ENROLL_MIN_EYE_DISTANCE_PX: float = Field(20.0, ge=0)
    ENROLL_MIN_SHARPNESS: float = Field(40.0, ge=0)  # variance of the Laplacian, aligned face
    ENROLL_MIN_BRIGHTNESS: float = Field(35.0, ge=0, le=255)
    ENROLL_MAX_BRIGHTNESS: float = Field(225.0, ge=0, le=255)
    ENROLL_MAX_YAW: float = Field(0.75, ge=0)  # nose offset from the eyes' midline, in eye distances
    ENROLL_MAX_ROLL_DEG: float = Field(45.0, ge=0, le=180)

    MAX_UPLOAD_MB: float = Field(20.0, gt=0)
    MAX_ENROL_IMAGES: int = Field(10, ge=1, le=1000)  # photos in one enrolment request
    MAX_IMAGE_PIXELS: int = Field(40_000_000, ge=10_000)
    # Uploads are decoded up to this side (larger JPEGs at a reduced scale): a 4000 px class photo keeps its
    # back rows. 4096 x 3072 x 3 bytes = 38 MB per photo being analysed (README "Memory").
    DECODE_MAX_SIDE: int = Field(4096, ge=320)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    LOG_FORMAT: Literal["json", "text"] = "json"
    DATA_DIR: Path = DEFAULT_DATA_DIR
    TZ_NAME: str = "Asia/Ho_Chi_Minh"

    HOST: str = "127.0.0.1"
    PORT: int = Field(8000, ge=1, le=65535)
    WORKERS: int = Field(2, ge=1, le=64)
    THREADS: int = Field(4, ge=1, le=256)
    REQUEST_TIMEOUT_S: float = Field(30.0, gt=0)
    GRACEFUL_TIMEOUT_S: int = Field(30, ge=1)
    WORKER_TIMEOUT_S: int = Field(120, ge=10)
    MAX_REQUESTS: int = Field(10_000, ge=0)
    MAX_REQUESTS_JITTER: int = Field(1_000, ge=0)
    # Waitress (Windows): idle connections close after CHANNEL_TIMEOUT_S (checked every few seconds), and it
    # holds up to WAITRESS_CONNECTION_LIMIT at once. 100 (Waitress's default) let 120 idle sockets stop the
    # service; 500 stays under Windows' select() limit of 512 sockets (README "On a LAN").
    CHANNEL_TIMEOUT_S: int = Field(30, ge=1)
    WAITRESS_CONNECTION_LIMIT: int = Field(500, ge=10, le=500)
    TRUSTED_PROXY_COUNT: int = Field(0, ge=0, le=5)  # proxies in front (nginx: 1) whose X-Forwarded-For is believed

    SESSIONS_ENABLED: bool = True  # this process runs session cameras (False: API only)
    SESSION_LEASE_S: float = Field(10.0, ge=2, le=300)  # a dead owner's sessions move within this (+ SESSION_POLL_S)
    SESSION_POLL_S: float = Field(1.0, gt=0, le=30)
    MAX_SESSIONS_PER_WORKER: int = Field(8, ge=1, le=256)
    MAX_CAMERAS_PER_SESSION: int = Field(16, ge=1, le=256)
    FRAME_INTERVAL_MS: int = Field(500, ge=0, le=600_000)
    CAMERA_OPEN_TIMEOUT_S: float = Field(10.0, gt=0, le=300)
    CAMERA_READ_TIMEOUT_S: float = Field(10.0, gt=0, le=300)
    CAMERA_MAX_FAILURES: int = Field(5, ge=1, le=1000)
    CAMERA_RETRY_BASE_S: float = Field(1.0, gt=0, le=60)
    CAMERA_RETRY_MAX_S: float = Field(30.0, gt=0, le=3600)
    # A camera is `offline` after CAMERA_MAX_FAILURES failures in a row and is still retried (every
    # CAMERA_RETRY_MAX_S at most); its session fails only when every camera has been offline this long.
    # 5 minutes: a PoE camera reboots in 30 to 120 s, a switch or power blip takes a room for a minute or
    # two; a room whose cameras are really gone (unplugged, wrong address) is reported within the lesson.
    CAMERA_OFFLINE_GRACE_S: float = Field(300.0, ge=0, le=86_400)
    # Every session ends by itself at its planned end (ends_at / duration_s at start), and at the latest
    # this long after it started: a backend that crashes or forgets `stop` does not leave cameras running
    # for days. 12 hours: longer than any school day's slot; raise it for a longer exam or event.
    SESSION_MAX_DURATION_S: float = Field(43_200.0, ge=60, le=30 * 86_400)
    # FFmpeg options for every camera ("key;value|key;value", e.g. "buffer_size;1048576"); the safe ones
    # (sessions/cameras.py: TCP for RTSP, no redirects, no playlists) cannot be loosened. The older name works.
    CAMERA_FFMPEG_OPTIONS: str = Field("", validation_alias=AliasChoices("CAMERA_FFMPEG_OPTIONS",
                                                                         "OPENCV_FFMPEG_CAPTURE_OPTIONS"))
    CAMERA_INFERENCE_CONCURRENCY: int = Field(1, ge=1, le=64)  # model runs at once for all cameras of a worker
    CONSOLE_COOKIE_SECURE: bool = False  # True when the console is served over HTTPS (a TLS proxy)
    # A console sign-in ends after this long without a request (teachers share staff-room PCs), and after
    # CONSOLE_SESSION_MAX_S whatever happens (security/console_sessions.py).
    CONSOLE_IDLE_TIMEOUT_S: float = Field(1800.0, ge=30, le=86_400)
    CONSOLE_SESSION_MAX_S: float = Field(43_200.0, ge=60, le=7 * 86_400)
    # A named, tracked face whose appearance has not changed is embedded again after this (a change of face
    # is caught at once by the tracker's appearance check; this only refreshes the best similarity).
    TRACK_REEMBED_S: float = Field(15.0, ge=0, le=3600)
    # The detector skips a frame whose picture changed by no more than this (grey levels, in the largest
    # cell of a 48x27 grid) since the last detection; when nothing ran for MOTION_MAX_SKIP_S (and 3 frames), the
    # region left longest runs (sessions/motion.py). MOTION_THRESHOLD 0: never skip.
    MOTION_THRESHOLD: float = Field(8.0, ge=0, le=255)
    MOTION_MAX_SKIP_S: float = Field(3.0, gt=0, le=60)
    # Small faces (README "Placing a classroom camera", docs/small_faces.json): a face whose shorter side is
    # under SMALL_FACE_PX is never named from one frame (/recognize reports it unnamed, face_too_small); a
    # camera track of one is named from at least SMALL_FACE_MIN_VIEWS embedded frames. Camera faces under
    # CAMERA_MIN_FACE_PX are not looked at (too few pixels to name; a camera may set its own min_face_px).
    SMALL_FACE_PX: int = Field(32, ge=0, le=1000)
    SMALL_FACE_MIN_VIEWS: int = Field(3, ge=1, le=100)
    CAMERA_MIN_FACE_PX: int = Field(16, ge=0, le=1000)
    CAMERA_PREVIEW_S: float = Field(10.0, gt=0, le=3600)  # how often a camera's view for the installer is renewed
    # A camera's delivered frames per second are counted over this window (session view, /health, metrics).
    CAMERA_RATE_WINDOW_S: float = Field(30.0, ge=2, le=3600)
    EVIDENCE_RETENTION_DAYS: float = Field(30.0, gt=0)
    EVIDENCE_SWEEP_S: float = Field(3600.0, gt=0)  # also removes delivered callbacks past their retention
    DELIVERED_RETENTION_DAYS: float = Field(30.0, gt=0)
    EVIDENCE_FRAME_MAX_SIDE: int = Field(640, ge=64, le=4096)
    API_KEYS: SecretStr | None = None  # comma-separated; more keys (hashed) live in the database
    ALLOW_UNAUTHENTICATED: bool = False  # serve without any key on a non-loopback address
    RATE_LIMIT_PER_MINUTE: int = Field(3000, ge=0)  # per API key, shared by all workers and servers; 0: off
    FAILED_KEY_ATTEMPTS_PER_MINUTE: int = Field(30, ge=0)  # wrong keys per client address, then 429; 0: off
    PUBLIC_METRICS: bool = True  # /metrics without a key (Prometheus scrapers)
    PUBLIC_HEALTH_DETAILS: bool = True  # /health without a key (/health/live and /ready are always open)
    CALLBACK_ALLOWED_HOSTS: str | None = None  # comma-separated host names, IPs or CIDRs callbacks may reach
    CAMERA_ALLOWED_NETWORKS: str | None = None  # comma-separated CIDRs or host names (loopback etc.) for cameras
    CAMERA_FILE_ROOT: Path | None = None  # video files may be used as cameras only under this folder
    PUBLIC_BASE_URL: str | None = None  # how the backend reaches this service (evidence URLs); default http://HOST:PORT
    CALLBACK_SECRET: SecretStr | None = None  # HMAC key of X-Recognizer-Signature
    CALLBACK_FLUSH_MS: int = Field(500, ge=0, le=60_000)
    CALLBACK_POLL_S: float = Field(0.5, gt=0, le=60)
    CALLBACK_CONNECT_TIMEOUT_S: float = Field(3.0, gt=0, le=60)
    CALLBACK_READ_TIMEOUT_S: float = Field(10.0, gt=0, le=300)
    CALLBACK_RETRY_BASE_S: float = Field(1.0, gt=0, le=600)
    CALLBACK_RETRY_MAX_S: float = Field(300.0, gt=0, le=86_400)
    CALLBACK_MAX_AGE_S: float = Field(3 * 86_400.0, gt=0)  # then a dead letter
    FAULT_INJECTION: bool = False  # tests only: lets X-Fault-Inject raise inside the model path

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper() if isinstance(value, str) else value

    @field_validator("LOG_FORMAT", mode="before")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower() if isinstance(value, str) else value

    @field_validator("DET_SIZE")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError("must be a multiple of 32")
        return value

    @field_validator("TZ_NAME")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:  # noqa: BLE001 - ZoneInfo raises several kinds for a bad name
            raise ValueError("unknown time zone") from None
        return value

    @field_validator("DATABASE_URL", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return value or None

    @model_validator(mode="after")
    def _pool_bounds(self) -> "Settings":
        if self.DB_POOL_MIN > self.DB_POOL_MAX:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        return self

    @property
    def ort_threads(self) -> int:
        """ONNX Runtime threads per session: ORT_THREADS, else the cores shared among WORKERS."""
        return self.ORT_THREADS or max(1, _cpu_count() // self.WORKERS)

    @property
    def inference_concurrency(self) -> int:
        """Model runs at once per process: INFERENCE_CONCURRENCY, else enough to keep every core busy.

        Each worker may use all cores when the others are idle (clients on keep-alive connections stick
        to one worker, and photos differ a lot in cost), at the price of some time-slicing under full load.
        """
        return self.INFERENCE_CONCURRENCY or max(1, _cpu_count() // self.ort_threads)

    @property
    def model_path(self) -> Path:
        """The model pack folder: MODEL_DIR, else MODEL_ROOT/models/MODEL_NAME."""
        if self.MODEL_DIR is not None:
            return self.MODEL_DIR.expanduser()
        return self.MODEL_ROOT.expanduser() / "models" / self.MODEL_NAME

    @property
    def shadow_path(self) -> Path | None:
        return self.SHADOW_MODEL_DIR.expanduser() if self.SHADOW_MODEL_DIR is not None else None

    @property
    def api_keys(self) -> list[str]:
        raw = self.API_KEYS.get_secret_value() if self.API_KEYS else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    @property
    def public_base_url(self) -> str:
        return (self.PUBLIC_BASE_URL or f"http://{self.HOST}:{self.PORT}").rstrip("/")

    @property
    def evidence_dir(self) -> Path:
        return self.DATA_DIR / "evidence"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.MAX_UPLOAD_MB * 1024 * 1024)


def load_settings(**overrides) -> Settings:
    """Build Settings from the environment plus overrides; raise ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]) or "configuration"
            value = err.get("input")
            shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
            problems.append(f"{name}: {err['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
