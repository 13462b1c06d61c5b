#!/usr/bin/env python3
"""First run and every run on Windows (start_recognizer_windows.bat hands over here); works on Linux too.

    python python/bootstrap.py [--install-only] [--dev] [options of start_windows_production.py]

Checks this Python is a supported version, creates .venv beside the repository, installs the pinned
requirements with exactly one OpenCV (the headless build pinned in requirements.txt), then starts the
service with Waitress from .venv. The install is redone whenever requirements.txt changed or the last
one did not finish, so a failed first run mends itself on the next. `--install-only` stops after the
install (scripts/setup.sh uses it; `--dev` adds requirements-dev.txt). Standard library only: this runs
before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
# pgserver (the embedded PostgreSQL) publishes wheels for these CPython versions only.
SUPPORTED = ((3, 12), (3, 11))
STAMP = ".requirements-installed"
CHECK_IMPORTS = "cv2, onnxruntime, insightface, flask, pgserver, waitress"  # what the service cannot start without


class BootstrapError(Exception):
    """One line saying what went wrong and what to do."""


def supported_versions() -> str:
    return " or ".join(f"{major}.{minor}" for major, minor in SUPPORTED)


def check_interpreter(version=None) -> None:
    version = tuple((version or sys.version_info)[:2])
    if version not in SUPPORTED:
        raise BootstrapError(f"Python {version[0]}.{version[1]} is not supported: install Python "
                             f"{supported_versions()} (python.org) and start again")


def venv_python(root: Path = ROOT) -> Path:
    if os.name == "nt":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def requirements_digest(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def headless_pin(requirements: Path = REQUIREMENTS) -> str:
    """The opencv-python-headless==X line of requirements.txt."""
    for line in requirements.read_text().splitlines():
        if line.strip().startswith("opencv-python-headless=="):
            return line.strip()
    raise BootstrapError(f"{requirements} pins no opencv-python-headless")


def needs_install(root: Path = ROOT) -> bool:
    stamp = root / ".venv" / STAMP
    return not venv_python(root).exists() or not stamp.exists() or stamp.read_text().strip() != requirements_digest(
        root / "requirements.txt")


def _run(args: list, what: str) -> None:
    print(f"bootstrap: {what}", flush=True)
    if subprocess.call([str(a) for a in args]) != 0:
        raise BootstrapError(f"{what} failed (see the messages above); fix it and start again")


def install_into(py, root: Path = ROOT, extra_requirements: list[Path] | None = None) -> None:
    """pip-install the pinned requirements into the interpreter `py`, with exactly one OpenCV."""
    requirements = root / "requirements.txt"
    _run([py, "-m", "pip", "install", "--upgrade", "pip"], "updating pip")
    _run([py, "-m", "pip", "install", "-r", requirements], "installing requirements.txt")
    for extra in extra_requirements or []:
        _run([py, "-m", "pip", "install", "-r", extra], f"installing {extra.name}")
    # insightface pulls in opencv-python (the GUI build); both install into one cv2 folder: keep exactly
    # the headless build pinned in requirements.txt.
    _run([py, "-m", "pip", "uninstall", "--quiet", "--yes", "opencv-python", "opencv-python-headless"],
         "removing the OpenCV builds")
    _run([py, "-m", "pip", "install", "--no-deps", headless_pin(requirements)], "installing the headless OpenCV")
    _run([py, "-c", f"import {CHECK_IMPORTS}"], "checking the install")


def link_project(py, root: Path = ROOT) -> None:
    """Make the project's packages (python/) importable by the venv's Python, as an editable install does:
    a .pth file in its site-packages. Scripts and tools then need no sys.path changes."""
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(out) / "face-recognition-attendance.pth"
    line = str((root / "python").resolve()) + "\n"
    if not pth.exists() or pth.read_text() != line:
        pth.write_text(line)


def install(root: Path = ROOT, extra_requirements: list[Path] | None = None) -> None:
    """Create .venv if needed and install into it; the stamp is written only once everything worked."""
    py = venv_python(root)
    if not py.exists():
        _run([sys.executable, "-m", "venv", root / ".venv"], "creating the virtual environment in .venv")
    (root / ".venv" / STAMP).unlink(missing_ok=True)
    install_into(py, root, extra_requirements)
    link_project(py, root)
    (root / ".venv" / STAMP).write_text(requirements_digest(root / "requirements.txt") + "\n")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    install_only, dev = "--install-only" in argv, "--dev" in argv
    argv = [a for a in argv if a not in ("--install-only", "--dev")]
    try:
        check_interpreter()
        if dev:  # scripts/setup.sh --dev: the test tools too, installed every time (pip skips what is there)
            install(extra_requirements=[ROOT / "requirements-dev.txt"])
        elif needs_install():
            install()
        else:
            link_project(venv_python())  # a venv made before the link existed
    except (BootstrapError, OSError, subprocess.CalledProcessError) as exc:
        print(f"bootstrap: error: {exc}", file=sys.stderr)
        return 2
    if install_only:
        return 0
    return subprocess.call([str(venv_python()), str(ROOT / "python" / "start_windows_production.py"), *argv])


if __name__ == "__main__":
    sys.exit(main())
