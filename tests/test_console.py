"""The console in a real browser: Debian's chromium driven by selenium through chromium-driver, against a real
Gunicorn with an API key set and a live camera session. Screenshots of each page go to docs/console-*.png."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import requests
from devtools.shared import REPO_ROOT
from devtools.streams import side_by_side, write_video
from session_helpers import FAST, people_shown, wait_for

KEY = "console-test-key"
DOCS = REPO_ROOT / "docs"
SIZE = (640, 480)
LEFT, RIGHT = (90, 140, 230, 300), (410, 140, 550, 300)

pytestmark = pytest.mark.skipif(not shutil.which("chromedriver") or not shutil.which("chromium"),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup.sh --dev)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _api(url: str, method: str, path: str, **kwargs):
    return requests.request(method, url + path, headers={"X-API-Key": KEY}, timeout=60, **kwargs)


def _shot(driver, name: str) -> None:
    """A screenshot for the README, faces pixelated: no photo of a real person goes into the repository."""
    DOCS.mkdir(exist_ok=True)
    # through the CSSOM: the console's Content-Security-Policy refuses an injected <style> element
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.style.filter = 'blur(14px) grayscale(1)');")
    driver.save_screenshot(str(DOCS / f"console-{name}.png"))
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.style.filter = '');")


def _text(driver) -> str:
    """The page's main text; "" while the page is being replaced (a navigation or a live refresh)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return driver.find_element("tag name", "main").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _retry_stale(action, attempts: int = 5):
    """Run a browser interaction again when a live refresh replaced the elements it held."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(attempts):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise


def _wait_text(driver, needle: str, timeout: float = 40):
    return wait_for(lambda: needle in _text(driver), timeout, f"'{needle}' on {driver.current_url}", interval=0.5)


def test_the_console_signs_in_watches_a_session_reviews_enrols_and_refuses_what_it_must(gunicorn_servers, browser,
                                                                                          tmp_path):
    from selenium.webdriver.common.by import By

    server = gunicorn_servers(**{**FAST, "WORKERS": 2, "API_KEYS": KEY})
    url = server.url
    (known, known_photos, known_img, known_box), (stranger, stranger_photos, stranger_img, stranger_box) = \
        people_shown(url, 2, min_photos=4, headers={"X-API-Key": KEY})
    r = _api(url, "POST", f"/api/v1/students/{known}/faces",
             files=[("image", (p.name, p.read_bytes())) for p in known_photos[1:3]])
    assert r.status_code == 201, r.text
    frame = side_by_side((known_img, known_box), (stranger_img, stranger_box), (LEFT, RIGHT), SIZE)
    empty = np.full_like(frame, 40)
    video = write_video(tmp_path / "console.mp4", [(frame, 30), (empty, 10)])

    # signed out: every page leads to the sign-in; a wrong key is refused
    browser.get(url + "/console/")
    assert "/console/login" in browser.current_url
    browser.find_element(By.ID, "api_key").send_keys("wrong-key")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait_text(browser, "not valid")
    _shot(browser, "login")
    browser.find_element(By.ID, "api_key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait_text(browser, "Sessions")

    r = _api(url, "POST", "/api/v1/sessions", json={
        "slot_id": 801, "cameras": [{"camera_id": 1, "url": str(video)}], "frame_interval_ms": 200,
        "callback_url": "http://127.0.0.1:9/cb", "student_ids": [known, "absent_kid"]})
    assert r.status_code == 201, r.text
    _api(url, "PUT", "/api/v1/students/absent_kid", json={"name": "Absent Kid"})
    browser.get(url + "/console/")
    _wait_text(browser, "801")
    _shot(browser, "sessions")
    browser.get(url + "/console/sessions/801")
    # the page refreshes by itself: the recognition and the review item appear without a reload
    _wait_text(browser, known)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "ul.review li.card"), 40, "a review item", 0.5)
    assert "absent_kid" in _text(browser)
    _shot(browser, "session")

    # confirm the stranger as a new student, enrolling the face
    def confirm():
        item = browser.find_element(By.CSS_SELECTOR, "ul.review li.card")
        field = item.find_element(By.CSS_SELECTOR, "input[name=student_id]")
        field.click()  # focus in a form: the live refresh leaves the page alone from here on
        field.clear()
        field.send_keys("new_kid")
        item.find_element(By.CSS_SELECTOR, "input[name=name]").send_keys("New Kid")
        item.find_element(By.CSS_SELECTOR, "input[name=enrol]").click()
        item.find_element(By.XPATH, ".//button[text()='Confirm']").click()

    _retry_stale(confirm)
    _wait_text(browser, "confirmed as new_kid and enrolled the face")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 1

    # students: search, enrol a photo by upload, delete a face with the confirmation step
    browser.get(url + "/console/students?q=new_")
    _wait_text(browser, "new_kid")
    _shot(browser, "students")
    browser.find_element(By.LINK_TEXT, "new_kid").click()
    browser.find_element(By.ID, "image").send_keys(str(stranger_photos[1]))
    browser.find_element(By.XPATH, "//button[text()='Enrol']").click()
    _wait_text(browser, "1 photo(s) enrolled")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 2
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in
             browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")]
    assert len(cells) == 2 and all(float(c[3]) > 10 and float(c[4]) > 0 for c in cells), cells  # quality scores
    _shot(browser, "student")
    first_delete = browser.find_elements(By.CSS_SELECTOR, "form[action*='/faces/'][action$='/delete']")[0]
    first_delete.find_element(By.CSS_SELECTOR, "input[name=confirmed]").click()
    first_delete.find_element(By.CSS_SELECTOR, "button").click()
    _wait_text(browser, "deleted")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 1

    browser.get(url + "/console/service")
    _wait_text(browser, "Threshold")
    _shot(browser, "service")
    browser.set_window_size(390, 844)  # a phone
    browser.get(url + "/console/sessions/801")
    _wait_text(browser, "Cameras")
    _shot(browser, "phone")

    # refusals: no cookie, no CSRF token, hostile form input; none changes anything
    cookie = {"console_session": browser.get_cookie("console_session")["value"]}
    page = requests.get(url + "/console/students/new_kid", cookies=cookie, timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    faces_before = _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"]
    assert requests.post(url + "/console/students/new_kid/delete", data={"confirmed": "yes", "csrf_token": token},
                         timeout=10).status_code == 401
    assert requests.post(url + "/console/students/new_kid/delete", data={"confirmed": "yes"}, cookies=cookie,
                         timeout=10).status_code == 400
    assert requests.get(url + "/console/service", timeout=10, allow_redirects=False).status_code == 302
    r = requests.post(url + "/console/students/new_kid/delete", data={"csrf_token": token}, cookies=cookie,
                      timeout=10)  # not confirmed
    assert "tick the box to confirm" in r.text
    items = _api(url, "GET", "/api/v1/sessions/801/review", params={"status": "open"}).json()["items"]
    for bad in ({"action": "confirm", "student_id": "not ok!"}, {"action": "dance"},
                {"action": "confirm", "student_id": "x" * 300}):
        target = items[0]["item_id"] if items else "00000000-0000-0000-0000-000000000000"
        r = requests.post(f"{url}/console/sessions/801/review/{target}", data={**bad, "csrf_token": token},
                          cookies=cookie, timeout=10)
        assert r.status_code == 200 and "not valid" in r.text, r.text[:300]
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == faces_before


def test_the_console_cannot_be_framed_survives_a_cross_site_link_and_ends_at_sign_out(gunicorn_servers, browser,
                                                                                      tmp_path):
    """In chromium: a page of another site frames the console (refused), links to it (the sign-in page shows,
    and the session lives on), then the operator signs out: Back shows no student and the old cookie,
    put back, opens nothing."""
    import http.server
    import threading

    from selenium.webdriver.common.by import By

    server = gunicorn_servers(**{**FAST, "WORKERS": 2, "API_KEYS": KEY})
    url = server.url
    assert _api(url, "PUT", "/api/v1/students/s-42", json={"name": "Private Pupil"}).status_code == 201
    student = f"{url}/console/students/s-42"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "frame.html").write_text(f'<html><body><iframe id="frame" src="{student}" width="800" height="600">'
                                     "</iframe></body></html>")
    (evil / "link.html").write_text(f'<html><body><a id="go" href="{student}">a link</a></body></html>')
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(evil), **k)  # noqa: E731
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    same_host = f"http://127.0.0.1:{port}/frame.html"  # another port of the same host: the cookie goes along
    other_site = f"http://localhost:{port}/link.html"  # another site: localhost is not 127.0.0.1
    try:
        browser.get(url + "/console/login")
        browser.find_element(By.ID, "api_key").send_keys(KEY)
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        _wait_text(browser, "Sessions")
        browser.get(student)
        _wait_text(browser, "Private Pupil")

        browser.get(same_host)  # framed by a page on another port: the browser refuses to show it
        browser.switch_to.frame(browser.find_element(By.ID, "frame"))
        assert "Private Pupil" not in browser.page_source and "Erase" not in browser.page_source
        browser.switch_to.default_content()
        browser.get(other_site)
        browser.find_element(By.ID, "go").click()  # linked from another site: no Strict cookie on this navigation
        wait_for(lambda: "/console/login" in browser.current_url, 20, "the sign-in page")
        browser.get(student)  # the operator opens the console again: still signed in
        _wait_text(browser, "Private Pupil")

        cookie = browser.get_cookie("console_session")
        browser.find_element(By.XPATH, "//button[starts-with(text(), 'Sign out')]").click()
        wait_for(lambda: "/console/login" in browser.current_url, 20, "the sign-in page after sign-out")
        browser.back()  # no-store: the student page is asked for again, and refused
        wait_for(lambda: "/console/login" in browser.current_url, 20, "Back to lead to the sign-in")
        assert "Private Pupil" not in browser.page_source
        browser.add_cookie({"name": "console_session", "value": cookie["value"], "path": "/console"})
        browser.get(student)  # the old cookie replayed
        wait_for(lambda: "/console/login" in browser.current_url, 20, "the replayed cookie to be refused")
        assert "Private Pupil" not in browser.page_source
    finally:
        other.shutdown()
