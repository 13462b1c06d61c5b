"""The console in a real browser: Debian's chromium driven by selenium through chromium-driver, against a real
Gunicorn with keys of their roles and a live roster session (python/devtools/console_tour.py). The README's
screenshots are made by scripts/console_screenshots.py, not here: the suite changes no tracked file."""

from __future__ import annotations

import csv
import io
import re
import shutil

import psycopg2
import pytest
import requests
from devtools.console_tour import DISPLAY, Scene, build_scene, chromium, sign_in, start_session
from session_helpers import FAST, people_shown, wait_for

from recognition_service.security.api_keys import create_key

KEY = "console-test-key"

pytestmark = pytest.mark.skipif(not shutil.which("chromedriver") or not shutil.which("chromium"),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup.sh --dev)")


@pytest.fixture
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def _api(url: str, method: str, path: str, **kwargs):
    return requests.request(method, url + path, headers={"X-API-Key": KEY}, timeout=60, **kwargs)


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


def _card(driver, needle: str):
    """The review card whose text holds `needle`."""
    from selenium.webdriver.common.by import By

    for card in driver.find_elements(By.CSS_SELECTOR, "ul.review li.card"):
        if needle in card.text:
            return card
    return None


def test_a_teacher_reads_names_confirms_in_one_click_exports_and_the_it_person_sees_the_service(
        gunicorn_servers, browser, tmp_path, database_url):
    from selenium.webdriver.common.by import By

    server = gunicorn_servers(**{**FAST, "WORKERS": 2, "API_KEYS": KEY, "TZ_NAME": "Asia/Bangkok"})
    url = server.url
    with psycopg2.connect(database_url) as conn:
        office = create_key(conn, "IT office", "admin")[1]
        teacher = create_key(conn, "Ms Tran (7B)", "teacher")[1]
    scene = build_scene(url, {"X-API-Key": KEY}, tmp_path, people_shown(url, 3, min_photos=4,
                                                                        headers={"X-API-Key": KEY}))
    pupil, stranger, visitor = (Scene.name_of(p) for p in (scene.pupil, scene.stranger, scene.visitor))

    # signed out: every page leads to the sign-in; a wrong key is refused
    browser.get(url + "/console/")
    assert "/console/login" in browser.current_url
    sign_in(browser, url, "wrong-key")
    _wait_text(browser, "not valid")
    sign_in(browser, url, office)
    _wait_text(browser, "Sessions")
    assert "Sign out (IT office, admin)" in browser.page_source  # the key's name, not key:1

    start_session(url, {"X-API-Key": KEY}, scene, 801)
    browser.get(url + "/console/")
    _wait_text(browser, DISPLAY["class_name"])
    assert "R 12 · Ms Tran" in _text(browser) and "Times are in Asia/Bangkok (UTC+07:00)" in browser.page_source
    browser.get(url + "/console/sessions/801")
    # the page refreshes by itself: names appear without a reload, ids only beside them
    _wait_text(browser, pupil)
    wait_for(lambda: _card(browser, "not on this class's roster"), 60, "the visitor's card", 0.5)
    wait_for(lambda: _card(browser, "Not recognised"), 60, "the stranger's card", 0.5)
    absent = browser.find_element(By.ID, "absent").text
    assert "Absent Kid" in absent and "absent-kid" in absent and scene.pupil[0] not in absent

    # the visitor: enrolled in another class; one click counts them, and says who did
    card = _card(browser, "not on this class's roster")
    assert f"Enrolled, not on this class's roster: {visitor}" in card.text
    _retry_stale(lambda: _card(browser, "not on this class's roster").find_element(
        By.XPATH, f".//button[starts-with(normalize-space(.), 'Count {visitor} present')]").click())
    _wait_text(browser, f"confirmed as {visitor} ({scene.visitor[0]})")
    recognised = browser.find_element(By.ID, "recognised").text
    assert "confirmed by IT office" in recognised and "not on this class's roster" in recognised

    # the stranger: a new student, typed in (the fallback), the face enrolled; what enrolling does is said
    card = _card(browser, "Not recognised")
    assert "Adds this camera picture to the student's enrolled photos" in card.text

    def confirm_typed():
        item = _card(browser, "Not recognised")
        item.find_element(By.CSS_SELECTOR, "details.typed summary").click()
        field = item.find_element(By.CSS_SELECTOR, "input[name=student_id]")
        field.click()  # focus in a form: the live refresh leaves the page alone from here on
        field.clear()
        field.send_keys("new_kid")
        item.find_element(By.CSS_SELECTOR, "input[name=name]").send_keys("New Kid")
        item.find_element(By.CSS_SELECTOR, "input[name=enrol]").click()
        item.find_element(By.XPATH, ".//button[normalize-space(.)='Confirm']").click()

    _retry_stale(confirm_typed)
    _wait_text(browser, "confirmed as New Kid (new_kid) and enrolled the face")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 1

    # the printable attendance, and the same as a CSV file
    browser.get(url + "/console/sessions/801/attendance")
    _wait_text(browser, "Attendance: 7B Mathematics")
    present = browser.find_element(By.ID, "present").text
    assert pupil in present and "camera" in present and f"{visitor} (not on the roster)" in present
    assert "confirmed by IT office" in present and "Absent Kid" in browser.find_element(By.ID, "absent").text
    assert "Asia/Bangkok" in _text(browser)
    cookie = {"console_session": browser.get_cookie("console_session")["value"]}
    r = requests.get(url + "/console/sessions/801/attendance.csv", cookies=cookie, timeout=10)
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    rows = {row["student_id"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert rows["absent-kid"]["status"] == "absent" and rows["new_kid"]["named_by"] == "IT office"
    assert rows[scene.pupil[0]]["named_by"] == "camera" and rows[scene.pupil[0]]["class_name"] == "7B Mathematics"

    # students: a photo of someone else is refused, naming them; the right photo goes in
    browser.get(url + "/console/students?q=new_")
    _wait_text(browser, "new_kid")
    browser.find_element(By.LINK_TEXT, "new_kid").click()
    browser.find_element(By.ID, "image").send_keys(str(scene.visitor[1][0]))
    browser.find_element(By.XPATH, "//button[text()='Enrol']").click()
    _wait_text(browser, f"this face matches {visitor} ({scene.visitor[0]})")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 1
    browser.find_element(By.ID, "image").send_keys(str(scene.stranger[1][1]))
    browser.find_element(By.XPATH, "//button[text()='Enrol']").click()
    _wait_text(browser, "1 photo(s) enrolled")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 2
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in
             browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")]
    assert len(cells) == 2 and all(float(c[3]) > 10 and float(c[4]) > 0 for c in cells), cells  # quality scores
    first_delete = browser.find_elements(By.CSS_SELECTOR, "form[action*='/faces/'][action$='/delete']")[0]
    first_delete.find_element(By.CSS_SELECTOR, "input[name=confirmed]").click()
    first_delete.find_element(By.CSS_SELECTOR, "button").click()
    _wait_text(browser, "deleted")
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == 1

    # the IT person's page: health, version, uptime, disk, the keys by name and role, who is signed in
    browser.get(url + "/console/service")
    _wait_text(browser, "Threshold")
    health = browser.find_element(By.ID, "health").text
    assert health.startswith("ok") and "version" in health and " up " in health
    assert "evidence images" in browser.find_element(By.ID, "disk").text
    keys = {row.find_elements(By.TAG_NAME, "td")[0].text: [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr")}
    assert keys["IT office"][1] == "admin" and "sign-in" in keys["IT office"][5] and keys["IT office"][4] != "never"
    assert keys["Ms Tran (7B)"][1] == "teacher" and keys["Ms Tran (7B)"][4] == "never" and not keys["Ms Tran (7B)"][5]
    assert office not in browser.page_source and teacher not in browser.page_source  # names, never the keys
    browser.set_window_size(390, 844)  # a phone
    browser.get(url + "/console/sessions/801")
    _wait_text(browser, "Cameras")
    browser.set_window_size(1280, 1000)

    # refusals: no cookie, no CSRF token, hostile form input; none changes anything
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
                {"action": "confirm", "student_id": "x" * 300}, {"action": "confirm", "choice": "pick:not ok!"}):
        target = items[0]["item_id"] if items else "00000000-0000-0000-0000-000000000000"
        r = requests.post(f"{url}/console/sessions/801/review/{target}", data={**bad, "csrf_token": token},
                          cookies=cookie, timeout=10)
        assert r.status_code == 200 and "not valid" in r.text, r.text[:300]
    assert _api(url, "GET", "/api/v1/students/new_kid").json()["face_count"] == faces_before

    # the teacher: signed in by name, no service page, and now last used on the IT person's page
    browser.find_element(By.XPATH, "//button[starts-with(text(), 'Sign out')]").click()
    wait_for(lambda: "/console/login" in browser.current_url, 20, "the sign-in page")
    sign_in(browser, url, teacher)
    _wait_text(browser, "Sessions")
    assert "Sign out (Ms Tran (7B), teacher)" in browser.page_source and "/console/service" not in browser.page_source
    assert requests.get(url + "/console/service", cookies={"console_session": browser.get_cookie(
        "console_session")["value"]}, timeout=10).status_code == 403


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
