@echo off
rem Starts the recognition service on Windows with Waitress.
rem First run: creates .venv beside this file and installs requirements.txt (with the headless OpenCV).
rem Settings come from environment variables or a .env file here (see README, Configuration).
setlocal
cd /d "%~dp0"

if not exist ".venv\Scripts\python.exe" (
    echo Creating the virtual environment in .venv ...
    py -3 -m venv .venv 2>nul || python -m venv .venv
    if errorlevel 1 goto :venv_failed
    ".venv\Scripts\python.exe" -m pip install --upgrade pip
    ".venv\Scripts\python.exe" -m pip install -r requirements.txt
    if errorlevel 1 goto :install_failed
    rem insightface pulls in opencv-python; keep exactly one cv2: the headless build pinned in requirements.txt
    for /f "usebackq delims=" %%L in (`findstr /b /c:"opencv-python-headless==" requirements.txt`) do set "HEADLESS=%%L"
    ".venv\Scripts\python.exe" -m pip uninstall --yes opencv-python opencv-python-headless
    ".venv\Scripts\python.exe" -m pip install --no-deps "%HEADLESS%"
    if errorlevel 1 goto :install_failed
)

".venv\Scripts\python.exe" python\start_windows_production.py %*
exit /b %errorlevel%

:venv_failed
echo Could not create the virtual environment: install Python 3.11 from python.org and try again.
exit /b 1

:install_failed
echo Installing the requirements failed; see the messages above.
exit /b 1
