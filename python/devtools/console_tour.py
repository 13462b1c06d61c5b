"""The console's tour in Debian's chromium (selenium + chromium-driver): one classroom scene, the browser, and
the steps a teacher takes. tests/test_console.py asserts on them; scripts/console_screenshots.py photographs
them for the README (faces blurred: no photo of a real person goes into the repository)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from devtools.streams import side_by_side, write_video

SIZE = (640, 480)
LEFT, RIGHT = (90, 140, 230, 300), (410, 140, 550, 300)
DISPLAY = {"class_name": "7B Mathematics", "room": "R 12", "teacher": "Ms Tran"}


@dataclass
class Scene:
    """A class of one enrolled pupil on the roster, a stranger, and an enrolled student of another class."""

    pupil: tuple
    stranger: tuple
    visitor: tuple
    video: Path

    @staticmethod
    def name_of(person: tuple) -> str:
        return person[0].replace("_", " ")


def build_scene(url: str, headers: dict, folder: Path, people: list[tuple]) -> Scene:
    """Enrol the pupil and the visitor (named with spaces: names are not ids), add a roster student who stays
    away, and write the camera's video: the pupil on the left, the stranger then the visitor on the right."""
    pupil, stranger, visitor = people
    for person in (pupil, visitor):
        r = requests.post(f"{url}/api/v1/students/{person[0]}/faces", headers=headers, timeout=60,
                          data={"name": Scene.name_of(person)},
                          files=[("image", (p.name, p.read_bytes())) for p in person[1][1:3]])
        assert r.status_code == 201, r.text
    r = requests.put(f"{url}/api/v1/students/absent-kid", json={"name": "Absent Kid"}, headers=headers, timeout=10)
    assert r.status_code in (200, 201), r.text
    with_stranger = side_by_side(pupil[2:], stranger[2:], (LEFT, RIGHT), SIZE)
    with_visitor = side_by_side(pupil[2:], visitor[2:], (LEFT, RIGHT), SIZE)
    empty = np.full_like(with_stranger, 40)
    video = write_video(folder / "console.mp4", [(with_stranger, 30), (with_visitor, 30), (empty, 10)])
    return Scene(pupil, stranger, visitor, video)


def start_session(url: str, headers: dict, scene: Scene, slot: int) -> None:
    r = requests.post(f"{url}/api/v1/sessions", headers=headers, timeout=10, json={
        "slot_id": slot, "cameras": [{"camera_id": 1, "url": str(scene.video)}], "frame_interval_ms": 200,
        "callback_url": "http://127.0.0.1:9/cb", "student_ids": [scene.pupil[0], "absent-kid"], **DISPLAY})
    assert r.status_code == 201, r.text


def chromium(profile: Path, width: int = 1280, height: int = 1000):
    """Headless chromium whose profile lives in `profile` (else it leaves a folder in /tmp)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    return driver


def sign_in(driver, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/console/login")
    driver.find_element(By.ID, "api_key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()


def screenshot(driver, path: Path) -> None:
    """The page with every image blurred (through the CSSOM: the console's CSP refuses an injected <style>)."""
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.style.filter = 'blur(14px) grayscale(1)');")
    driver.save_screenshot(str(path))
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.style.filter = '');")
