#!/usr/bin/env python3
"""The README's console screenshots (docs/console-*.png), made in Debian's chromium on a scratch service.

Starts its own PostgreSQL and Gunicorn in a temporary folder (nothing of a school's data is touched, and
the folder is removed at the end), plays the classroom scene of tests/test_console.py
(python/devtools/console_tour.py) and photographs each page with every image blurred: no photo of a real
person goes into the repository. Needs `scripts/setup.sh --dev` (chromium, chromium-driver, selenium).

    .venv/bin/python scripts/console_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from devtools.console_tour import Scene, build_scene, chromium, screenshot, sign_in, start_session  # noqa: E402
from devtools.servers import Server  # noqa: E402
from devtools.shared import REPO_ROOT  # noqa: E402
from session_helpers import people_shown, wait_for  # noqa: E402

from recognition_service.security.api_keys import create_key  # noqa: E402

KEY = "screenshots-admin-key"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs", help="where the PNGs go (default docs/)")
    args = parser.parse_args(argv)
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        print("needs Debian's chromium and chromium-driver: scripts/setup.sh --dev", file=sys.stderr)
        return 2
    import pgserver
    from selenium.webdriver.common.by import By

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    pg = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    server = driver = None
    try:
        url_db = pg.get_uri()
        server = Server("gunicorn", url_db, tmp, API_KEYS=KEY, WORKERS=2, SESSION_POLL_S=0.5).wait_ready(120)
        url, headers = server.url, {"X-API-Key": KEY}
        with psycopg2.connect(url_db) as conn:
            office = create_key(conn, "IT office", "admin")[1]
            create_key(conn, "Ms Tran (7B)", "teacher")
            create_key(conn, "attendance backend", "backend")
        scene = build_scene(url, headers, tmp, people_shown(url, 3, min_photos=4, headers=headers))
        driver = chromium(tmp / "chromium")

        def text() -> str:
            return driver.find_element(By.TAG_NAME, "main").text

        def shot(name: str, width: int = 1280) -> None:
            driver.set_window_size(width, 1000)  # then as tall as the page (at most 2400 px): the whole page
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(2400, height + 140))
            screenshot(driver, args.out / f"console-{name}.png")
            print(f"wrote {args.out / f'console-{name}.png'}")

        driver.get(url + "/console/login")
        shot("login")
        sign_in(driver, url, office)
        wait_for(lambda: "Sessions" in text(), 30, "the sessions page")
        start_session(url, headers, scene, 801)
        driver.get(url + "/console/sessions/801")
        wait_for(lambda: "not on this class's roster" in text() and "Not recognised" in text(), 90,
                 "the review cards", 0.5)
        shot("session")
        visitor = Scene.name_of(scene.visitor)
        driver.find_element(By.XPATH, f"//button[starts-with(normalize-space(.), 'Count {visitor} present')]").click()
        wait_for(lambda: "confirmed as" in text(), 30, "the confirmation")
        driver.get(url + "/console/")
        time.sleep(1)
        shot("sessions")
        driver.get(url + "/console/sessions/801/attendance")
        shot("attendance")
        driver.get(url + "/console/students")
        shot("students")
        driver.get(url + f"/console/students/{scene.pupil[0]}")
        shot("student")
        driver.get(url + "/console/service")
        wait_for(lambda: "Threshold" in text(), 30, "the service page")
        shot("service")
        driver.set_window_size(390, 844)
        driver.get(url + "/console/sessions/801")
        wait_for(lambda: "Cameras" in text(), 30, "the session page")
        shot("phone", width=390)
        return 0
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.kill()
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
