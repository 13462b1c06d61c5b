"""The service version (one place: /health, /openapi.json and the package metadata read it)."""

__version__ = "0.7.0"
