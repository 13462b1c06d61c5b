"""Enrolment quality gate: one usable face, with enough eye distance, sharpness, light and a frontal pose."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass
class Quality:
    eye_distance_px: float  # in the photo's pixels
    sharpness: float        # variance of the Laplacian of the aligned 112 x 112 face
    brightness: float       # mean gray level of the aligned face, 0-255
    yaw: float              # nose offset from the eyes' midline, in eye distances (0 = frontal)
    roll_deg: float         # angle of the eye line

    def to_dict(self) -> dict:
        return {k: round(v, 2) + 0.0 for k, v in asdict(self).items()}  # + 0.0: no "-0.0" in JSON


def measure(landmarks, aligned_bgr: np.ndarray) -> Quality:
    """Scores from the five landmarks (eyes, nose, mouth corners) and the aligned crop."""
    kps = np.asarray(landmarks, np.float64).reshape(5, 2)
    left_eye, right_eye, nose = kps[0], kps[1], kps[2]
    eyes = right_eye - left_eye
    eye_distance = float(np.hypot(*eyes))
    roll = math.degrees(math.atan2(eyes[1], eyes[0]))
    # project the nose onto the eye line: 0.5 of the way across is frontal
    along = float(np.dot(nose - left_eye, eyes) / max(eye_distance**2, 1e-9))
    gray = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    inner = gray[16:96, 16:96]  # the face, not the background corners of the crop
    return Quality(eye_distance_px=eye_distance, sharpness=float(cv2.Laplacian(inner, cv2.CV_64F).var()),
                   brightness=float(inner.mean()), yaw=along - 0.5, roll_deg=roll)


def problems(q: Quality, settings) -> list[tuple[str, str]]:
    """(reason, message) for every rule the face breaks; causes before effects (a dark face is also flat)."""
    out = []
    if q.eye_distance_px < settings.ENROLL_MIN_EYE_DISTANCE_PX:
        out.append(("face_too_small", f"the eyes are {q.eye_distance_px:.0f} px apart; at least "
                                      f"{settings.ENROLL_MIN_EYE_DISTANCE_PX} px needed"))
    if abs(q.yaw) > settings.ENROLL_MAX_YAW or abs(q.roll_deg) > settings.ENROLL_MAX_ROLL_DEG:
        out.append(("pose_too_far", "the face is turned or tilted too far; ask for a frontal photo"))
    if q.brightness < settings.ENROLL_MIN_BRIGHTNESS:
        out.append(("too_dark", f"the face is too dark (mean {q.brightness:.0f} of 255)"))
    if q.brightness > settings.ENROLL_MAX_BRIGHTNESS:
        out.append(("too_bright", f"the face is too bright (mean {q.brightness:.0f} of 255)"))
    if q.sharpness < settings.ENROLL_MIN_SHARPNESS:
        out.append(("too_blurry", f"the face is blurred (sharpness {q.sharpness:.0f}, at least "
                                  f"{settings.ENROLL_MIN_SHARPNESS:.0f})"))
    return out


@dataclass
class Refusal:
    """Why a photo cannot be enrolled: the first reason, its message, every rule broken."""

    reason: str
    message: str
    problems: list[str] | None = None
    quality: Quality | None = None


def enrolment_face(faces: list, settings):
    """(face, None) for the one usable face of an enrolment photo, else (None, Refusal)."""
    usable = [f for f in faces if f.min_side >= settings.ENROLL_MIN_FACE_PX]
    if not faces:
        return None, Refusal("no_face", "no face found")
    if not usable:
        return None, Refusal("face_too_small", f"the face is smaller than {settings.ENROLL_MIN_FACE_PX} px")
    if len(usable) > 1:
        return None, Refusal("multiple_faces", f"{len(usable)} faces found; send a photo of the student alone")
    face = usable[0]
    failed = problems(face.quality, settings) if settings.ENROLL_QUALITY_GATE else []
    if failed:
        return None, Refusal(failed[0][0], failed[0][1], [r for r, _ in failed], face.quality)
    return face, None
