"""One logging configuration for Gunicorn and Waitress: JSON lines or plain text."""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, and the stack trace if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker: several write to one stream
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain text with the extras appended as key=value."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{text} {extras}" if extras else text


def dict_config(level: str = "INFO", fmt: str = "json") -> dict:
    """The logging configuration shared by the app, Gunicorn (logconfig_dict) and Waitress."""
    formatter = "recognition_service.serving.logging_setup." + ("JsonFormatter" if fmt == "json" else "TextFormatter")
    quiet = "WARNING" if logging.getLevelName(level) < logging.WARNING else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "gunicorn.error": {"handlers": [], "propagate": True, "level": level},
            # our own per-request line (recognition_service.access) replaces the servers' access logs
            "gunicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            "waitress": {"handlers": [], "propagate": True, "level": level},
            "pgserver": {"handlers": [], "propagate": True, "level": quiet},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record (ours, Gunicorn's, Waitress's) to stderr in one format."""
    logging.config.dictConfig(dict_config(level, fmt))
