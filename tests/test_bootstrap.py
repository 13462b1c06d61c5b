"""python/bootstrap.py: the first-run install that Windows (start_recognizer_windows.bat) and setup.sh share."""

from __future__ import annotations

import os
import subprocess
import sys

import bootstrap
import pytest
from devtools.shared import REPO_ROOT


@pytest.mark.parametrize("version,ok", [((3, 11), True), ((3, 12), True), ((3, 13), False), ((3, 14), False),
                                        ((3, 10), False)])
def test_only_versions_with_every_wheel_are_accepted(version, ok):
    if ok:
        bootstrap.check_interpreter(version)
    else:
        with pytest.raises(bootstrap.BootstrapError, match=r"install Python 3\.12 or 3\.11"):
            bootstrap.check_interpreter(version)


def test_the_headless_opencv_pin_comes_from_requirements_txt():
    pin = bootstrap.headless_pin()
    assert pin.startswith("opencv-python-headless==") and pin in (REPO_ROOT / "requirements.txt").read_text()


def test_a_failed_install_is_redone_on_the_next_run_and_a_finished_one_is_not(tmp_path, monkeypatch):
    """The old .bat skipped the install forever once .venv existed, even when the install had failed."""
    root = tmp_path / "repo"
    root.mkdir()
    headless = bootstrap.headless_pin()
    (root / "requirements.txt").write_text(f"no-such-package-for-recognizer-tests==0.0.1\n{headless}\n")
    monkeypatch.setattr(bootstrap, "CHECK_IMPORTS", "cv2")
    with pytest.raises(bootstrap.BootstrapError, match="installing requirements.txt failed"):
        bootstrap.install(root)
    assert bootstrap.venv_python(root).exists() and bootstrap.needs_install(root)  # .venv exists, unfinished

    (root / "requirements.txt").write_text(f"{headless}\n")
    bootstrap.install(root)
    assert not bootstrap.needs_install(root)
    installed = subprocess.run([str(bootstrap.venv_python(root)), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout.lower().splitlines()
    assert headless.lower() in installed and not any(p.startswith("opencv-python==") for p in installed)
    (root / "requirements.txt").write_text(f"{headless}\n# changed\n")
    assert bootstrap.needs_install(root)  # requirements changed: install again


def test_an_unsupported_python_stops_at_once_with_one_line(tmp_path):
    code = "import sys, bootstrap; bootstrap.SUPPORTED = ((2, 7),); sys.exit(bootstrap.main([]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "python")})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "install Python 2.7" in lines[0], done.stderr
