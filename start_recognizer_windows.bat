@echo off
rem Starts the recognition service on Windows: finds Python 3.12 or 3.11 and hands over to python\bootstrap.py,
rem which creates .venv, installs the pinned requirements (headless OpenCV) and starts Waitress.
rem Arguments are passed on (e.g. --port 8080). Settings: environment variables or a .env file here (README).
setlocal
cd /d "%~dp0"
set "PY="
call :try py -3.12
if not defined PY call :try py -3.11
if not defined PY call :try python
if not defined PY (
    echo Python 3.12 or 3.11 is needed ^(the embedded PostgreSQL has no build for newer ones^): install it from python.org and start again.
    pause
    exit /b 2
)
call %PY% python\bootstrap.py %*
set "RC=%ERRORLEVEL%"
rem A double-clicked window would close at once: keep it open when something went wrong.
if not "%RC%"=="0" pause
exit /b %RC%

:try
rem PY becomes the command given (py -3.12, python, ...) when it runs a supported Python. `call`: py and
rem python may be .bat shims (pyenv-win), which would otherwise never return here.
call %* -c "import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))" >nul 2>&1
if not errorlevel 1 set "PY=%*"
exit /b 0
