"""start_recognizer_windows.bat under Wine's cmd (Debian's wine): the few lines of cmd logic it still has.

Windows Python cannot run under Wine here, so `py` and `python` are stand-in .bat files that record how
they were called and answer as a machine with the given Python versions would. What runs after the hand-
over (python/bootstrap.py) is tested on Linux in tests/test_bootstrap.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from devtools.shared import REPO_ROOT

WINE = shutil.which("wine")
pytestmark = pytest.mark.skipif(WINE is None, reason="wine is installed by scripts/setup.sh --dev")

PY_STUB = r"""@echo off
rem stand-in for the Python launcher: knows the versions that have a py-3.X.ok file beside it
>>"%STUB_LOG%" echo py %*
if not exist "%~dp0py%1.ok" exit /b 103
if "%2"=="-c" exit /b 0
exit /b %STUB_RC%
"""
PYTHON_STUB = r"""@echo off
rem stand-in for python on PATH: STUB_PYTHON_OK=0 when its version is supported
>>"%STUB_LOG%" echo python %*
if "%1"=="-c" exit /b %STUB_PYTHON_OK%
exit /b %STUB_RC%
"""


@pytest.fixture(scope="module")
def wine_prefix(tmp_path_factory):
    import glob
    import tempfile

    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all"}
    servers = os.path.join(tempfile.gettempdir(), "wine-*")
    before = set(glob.glob(servers))
    subprocess.run([WINE, "cmd", "/c", "exit 0"], env=env, capture_output=True, timeout=180)
    yield prefix
    # wineserver keeps a folder in /tmp whatever TMPDIR says: stop it and remove the folder (nothing left behind)
    subprocess.run([shutil.which("wineserver") or "wineserver", "-k"], env=env, capture_output=True, timeout=60)
    for folder in set(glob.glob(servers)) - before:
        shutil.rmtree(folder, ignore_errors=True)


def run_bat(tmp_path, wine_prefix, *args, py_versions=None, python_ok=None, rc=0):
    repo = tmp_path / "repo"
    (repo / "python").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "start_recognizer_windows.bat", repo)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    if py_versions is not None:
        (stubs / "py.bat").write_text(PY_STUB.replace("\n", "\r\n"))
        for version in py_versions:
            (stubs / f"py-{version}.ok").write_text("")
    if python_ok is not None:
        (stubs / "python.bat").write_text(PYTHON_STUB.replace("\n", "\r\n"))
    log = tmp_path / "calls.log"
    env = {**os.environ, "WINEPREFIX": str(wine_prefix), "WINEDEBUG": "-all",
           "WINEPATH": f"Z:{stubs}".replace("/", "\\"), "STUB_LOG": f"Z:{log}".replace("/", "\\"),
           "STUB_PYTHON_OK": str(python_ok if python_ok is not None else 1), "STUB_RC": str(rc)}
    done = subprocess.run([WINE, "cmd", "/c", f"Z:{repo / 'start_recognizer_windows.bat'}".replace("/", "\\"),
                           *args], env=env, input="\r\n", capture_output=True, text=True, timeout=180)
    calls = log.read_text().split("\n") if log.exists() else []
    return done, [c.strip() for c in calls if c.strip()]


def test_the_newest_supported_launcher_version_gets_the_arguments(tmp_path, wine_prefix):
    done, calls = run_bat(tmp_path, wine_prefix, "--port", "8080", py_versions=["3.11", "3.13"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls[-1] == r"py -3.11 python\bootstrap.py --port 8080", calls
    assert calls[0].startswith("py -3.12 -c")  # 3.12 was tried first
    assert "Press any key" not in done.stdout


def test_python_on_path_is_used_when_its_version_is_supported(tmp_path, wine_prefix):
    done, calls = run_bat(tmp_path, wine_prefix, "--threads", "8", python_ok=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls[-1] == r"python python\bootstrap.py --threads 8", calls


def test_no_supported_python_says_which_to_install_and_keeps_the_window_open(tmp_path, wine_prefix):
    done, calls = run_bat(tmp_path, wine_prefix, py_versions=["3.13", "3.14"], python_ok=1)
    assert done.returncode == 2
    assert "Python 3.12 or 3.11 is needed" in done.stdout and "Press any key" in done.stdout
    assert not any("bootstrap.py" in c for c in calls)


def test_a_failed_start_keeps_the_window_open_and_fails(tmp_path, wine_prefix):
    done, calls = run_bat(tmp_path, wine_prefix, py_versions=["3.12"], rc=2)
    # (Windows passes the bootstrap's code on; Wine's `call` turns every failure into 1)
    assert done.returncode != 0 and "Press any key" in done.stdout, done.stdout
    assert calls[-1] == r"py -3.12 python\bootstrap.py", calls
