"""The package's shape, kept: Flask only at the edge, data flowing one way, a small package root."""

from __future__ import annotations

import ast
from pathlib import Path

import recognition_service

PACKAGE = Path(recognition_service.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _modules(*folders: str) -> list[Path]:
    return [p for f in folders for p in (PACKAGE / f).rglob("*.py")]


def test_no_module_outside_api_and_the_app_factory_imports_flask_or_werkzeug():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "api" or rel == Path("__init__.py"):
            continue
        web = {n for n in _imports(path) if n.split(".")[0] in ("flask", "werkzeug")}
        if web:
            offenders[str(rel)] = web
    assert offenders == {}


def test_domains_never_import_the_api_and_cameras_never_reach_up():
    for path in _modules("recognition", "students", "sessions", "callbacks", "security", "storage"):
        assert not any(n.startswith("recognition_service.api") for n in _imports(path)), path
    for name in ("camera_worker.py", "recorder.py", "runner.py", "tracking.py", "track_decision.py", "motion.py"):
        up = {n for n in _imports(PACKAGE / "sessions" / name)
              if n.startswith(("recognition_service.sessions.supervisor", "recognition_service.state"))}
        assert up == set(), (name, up)


def test_the_package_root_holds_at_most_eight_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 8
