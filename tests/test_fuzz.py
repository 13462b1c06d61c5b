"""Property-based tests (hypothesis): image decoding and request validation survive any input."""

from __future__ import annotations

import io

import numpy as np
from devtools.shared import sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from recognition_service.errors import ApiError
from recognition_service.recognition.images import decode_image

REAL_JPEG = sample("obama.jpg")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode(data: bytes):
    try:
        return decode_image(data, max_pixels=4_000_000, max_side=1920)
    except ApiError as exc:  # the only failures allowed: a clear 4xx
        assert 400 <= exc.status < 500 and exc.code in ("invalid_image", "image_too_large")
        return None


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes_decode_or_are_refused(data):
    _decode(data)


@FAST
@given(st.integers(min_value=0, max_value=len(REAL_JPEG)), st.binary(max_size=64), st.integers(min_value=0))
def test_truncated_or_corrupted_jpegs_decode_or_are_refused(cut, junk, where):
    data = bytearray(REAL_JPEG[:cut])
    if data:
        at = where % len(data)
        data[at:at + len(junk)] = junk
    image = _decode(bytes(data))
    if image is not None:
        assert image.bgr.ndim == 3 and image.bgr.shape[2] == 3 and image.bgr.dtype == np.uint8


@FAST
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["L", "LA", "RGB", "RGBA", "P", "I;16", "1", "CMYK"]),
       st.sampled_from(["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"]))
def test_any_mode_and_format_decodes_to_bgr_or_is_refused(width, height, mode, fmt):
    try:
        buf = io.BytesIO()
        Image.new(mode, (width, height)).save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow can't write that combination
    image = _decode(buf.getvalue())
    if image is not None:
        assert image.bgr.shape == (height, width, 3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
session_like = st.fixed_dictionaries({}, optional={
    "slot_id": json_values | st.integers(-5, 2**64), "cameras": json_values | st.lists(
        st.fixed_dictionaries({}, optional={"camera_id": json_values, "url": json_values | st.text(max_size=40)}),
        max_size=3),
    "callback_url": json_values | st.sampled_from(["http://127.0.0.1:9/cb", "http://169.254.169.254/", "x"]),
    "student_ids": json_values, "threshold": json_values, "frame_interval_ms": json_values,
    "mode": json_values, "callback_type": json_values})


@FAST
@given(body=session_like)
def test_any_session_request_gets_a_4xx_or_201_never_500(client, body):
    r = client.post("/api/v1/sessions", json=body)
    assert r.status_code in (201, 400, 409, 422), (r.status_code, r.json)
    if r.status_code >= 400:
        assert r.json["error"]["code"] and r.json["error"]["message"]


@FAST
@given(name=json_values, student_id=st.text(min_size=1, max_size=140).filter(lambda s: "/" not in s and s.strip()))
def test_any_student_request_gets_a_clear_answer(client, name, student_id):
    r = client.put(f"/api/v1/students/{student_id}", json={"name": name})
    assert r.status_code in (200, 201, 400, 404, 405, 422), (r.status_code, r.get_data()[:200])
    if r.status_code >= 400:
        assert r.is_json and r.json["error"]["code"]
