"""Classroom scenes for tests and benchmarks: rows of real people at the face sizes a camera shows.

A 1080p camera with a 90-degree lens at the front of a room shows a face about 80 px wide in the first
row and 28 px in the fifth. A scene here is a synthetic room (wall, board, window, desks, texture) with
people of ../shared/faces/identities seated in rows, each face scaled to its row's width and blended in
with a soft edge, then the optics and sensor of a cheap camera (slight blur, grain). Faces are placed with
OpenCV's YuNet detector, not the service's own, so the scene does not depend on what is being tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from devtools.shared import SHARED, identities

YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2026may.onnx"
# (face width px, students) front to back: a 1080p camera at 2, 3, 4, 5 and 6 m (README "Placing a camera")
ROWS_1080P = ((80, 5), (60, 6), (45, 6), (36, 7), (28, 8))


@dataclass(frozen=True)
class Seat:
    person: str
    photo: Path     # the photo shown (not one used for enrolment)
    row: int        # 0 = front
    width: int      # face width in the frame, px
    box: tuple[float, float, float, float]  # where the face is in the frame (x1, y1, x2, y2)


def face_box(image: np.ndarray) -> tuple[float, float, float, float] | None:
    """The largest face YuNet finds in a photo (x1, y1, x2, y2), or None."""
    h, w = image.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(YUNET), "", (w, h), score_threshold=0.6)
    _, faces = detector.detect(image)
    if faces is None or not len(faces):
        return None
    x, y, fw, fh = max(faces, key=lambda f: f[2] * f[3])[:4]
    return (float(x), float(y), float(x + fw), float(y + fh))


def background(size: tuple[int, int], rng) -> np.ndarray:
    """A plain classroom: a wall with a gradient, a board, a window, desk edges and some texture."""
    w, h = size
    wall = np.linspace(150, 110, h, dtype=np.float32)[:, None, None] * np.array([1.0, 1.02, 1.08], np.float32)
    frame = np.broadcast_to(wall, (h, w, 3)).copy()
    frame[int(h * 0.05):int(h * 0.22), int(w * 0.3):int(w * 0.7)] = (60, 80, 60)       # the board
    frame[int(h * 0.04):int(h * 0.3), int(w * 0.82):int(w * 0.97)] = (215, 205, 190)   # a bright window
    for i in range(5):                                                                   # desk edges
        y = int(h * (0.36 + 0.13 * i))
        frame[y:y + max(2, h // 60)] = (70, 95, 130)
    frame += rng.normal(0, 6, (h // 8 + 1, w // 8 + 1, 1)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(frame, 0, 255)


def place(frame: np.ndarray, photo: np.ndarray, box, centre, width: float) -> tuple[float, float, float, float]:
    """Blend the head and shoulders around `box` into `frame`, the face `width` px wide at `centre`."""
    x1, y1, x2, y2 = box
    scale = width / max(x2 - x1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # the head with some hair and shoulders: 2.2 face widths across, 2.6 face heights down
    half_w, half_h = 1.1 * (x2 - x1), 1.3 * (y2 - y1)
    src = [max(0, int(cx - half_w)), max(0, int(cy - half_h * 0.9)),
           min(photo.shape[1], int(cx + half_w)), min(photo.shape[0], int(cy + half_h * 1.1))]
    patch = photo[src[1]:src[3], src[0]:src[2]]
    out_w, out_h = max(2, int(round(patch.shape[1] * scale))), max(2, int(round(patch.shape[0] * scale)))
    patch = cv2.resize(patch, (out_w, out_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    fx, fy = centre[0] - (cx - src[0]) * scale, centre[1] - (cy - src[1]) * scale
    ox, oy = int(round(fx)), int(round(fy))
    mask = np.zeros((out_h, out_w), np.float32)
    cv2.ellipse(mask, (out_w // 2, out_h // 2), (max(1, out_w // 2 - 1), max(1, out_h // 2 - 1)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, out_w / 14))[:, :, None]
    fh, fw = frame.shape[:2]
    a1, b1 = max(0, ox), max(0, oy)
    a2, b2 = min(fw, ox + out_w), min(fh, oy + out_h)
    if a2 <= a1 or b2 <= b1:
        raise ValueError("a seat lies outside the frame")
    p = patch[b1 - oy:b2 - oy, a1 - ox:a2 - ox].astype(np.float32)
    m = mask[b1 - oy:b2 - oy, a1 - ox:a2 - ox]
    frame[b1:b2, a1:a2] = frame[b1:b2, a1:a2] * (1 - m) + p * m
    return ((x1 - src[0]) * scale + ox, (y1 - src[1]) * scale + oy, (x2 - src[0]) * scale + ox,
            (y2 - src[1]) * scale + oy)


def cast(count: int, *, skip: int = 0) -> list[tuple[str, list[Path], Path, np.ndarray, tuple]]:
    """`count` people with at least 3 photos whose shown photo YuNet finds a face in, after `skip` of them:
    (name, photos to enrol, photo shown, its pixels, its face box)."""
    out = []
    for person in identities(min_photos=3)[skip:]:
        photos = sorted(person.iterdir())
        shown = cv2.imread(str(photos[-1]))
        box = face_box(shown) if shown is not None else None
        if box is None or box[2] - box[0] < 40:
            continue
        out.append((person.name, photos[:2], photos[-1], shown, box))
        if len(out) == count:
            return out
    raise RuntimeError(f"only {len(out)} usable people in the shared identities, {count} asked")


def classroom(size: tuple[int, int] = (1920, 1080), rows=ROWS_1080P, *, people=None, seed: int = 0,
              blur: float = 0.6, noise: float = 3.0) -> tuple[np.ndarray, list[Seat]]:
    """A classroom frame (BGR uint8) and its seats; `rows` front to back as (face width, students).
    Rows sit lower in the frame the nearer they are, like a camera above the board looking down the room."""
    rng = np.random.default_rng(seed)
    w, h = size
    people = people if people is not None else cast(sum(n for _, n in rows))
    frame = background(size, rng)
    seats, k = [], 0
    nrows = len(rows)
    placed = []
    for r in reversed(range(nrows)):  # the back row first: nearer people are drawn over it
        width, count = rows[r]
        cy = h * (0.26 + 0.56 * (nrows - 1 - r) / max(1, nrows - 1))
        margin = 0.06 + 0.03 * (nrows - 1 - r) / max(1, nrows - 1)
        for i in range(count):
            cx = w * (margin + (1 - 2 * margin) * (i + 0.5) / count) + rng.uniform(-0.15, 0.15) * width
            placed.append((r, width, (cx, cy + rng.uniform(-0.1, 0.1) * width)))
    for r, width, centre in placed:
        name, _, shown_path, shown, box = people[k]
        k += 1
        seats.append(Seat(name, shown_path, r, width, place(frame, shown, box, centre, width)))
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    frame = frame + rng.normal(0, noise, frame.shape) if noise else frame
    return np.clip(frame, 0, 255).astype(np.uint8), seats


def seat_of(seats: list[Seat], box) -> Seat | None:
    """The seat whose face holds the centre of `box` (a detected or reported face), if any."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for seat in seats:
        x1, y1, x2, y2 = seat.box
        pad = 0.25 * (x2 - x1)
        if x1 - pad <= cx <= x2 + pad and y1 - pad <= cy <= y2 + pad:
            return seat
    return None
