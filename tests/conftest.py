"""Fixtures: a real PostgreSQL server (pgserver, or TEST_DATABASE_URL), a fresh database per test, apps."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from devtools.shared import MODEL_PACK  # noqa: E402
from recognition_service import create_app  # noqa: E402
from recognition_service.config import load_settings  # noqa: E402

_counter = itertools.count()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_url():
    """URL of a PostgreSQL server's maintenance database."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="recognizer-tests-"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)  # the suite leaves nothing behind


@pytest.fixture
def database_url(pg_url):
    """A new, empty database for one test."""
    name = f"t{os.getpid()}_{next(_counter)}"
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    yield _with_database(pg_url, name)
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build apps on the test database; closes their pools afterwards."""
    apps = []

    def _make(**overrides):
        values = dict(DATABASE_URL=database_url, MODEL_DIR=str(MODEL_PACK), DATA_DIR=str(tmp_path / "data"),
                      ORT_THREADS=2)
        values.update(overrides)
        app = create_app(load_settings(**values))
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["recognition"].close()


@pytest.fixture
def gunicorn_servers(database_url, tmp_path):
    """Start real Gunicorn services on the test database (`start(**env)`); all are killed afterwards."""
    from devtools.servers import Server

    started: list[Server] = []

    def _start(**env) -> Server:
        server = Server("gunicorn", database_url, tmp_path, **env).wait_ready(90)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.kill()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
