"""The recognition threshold in force: RECOGNITION_THRESHOLD when set, else the measured default of the model.

Rule for a default: the similarity at which 1 in 10,000 impostor pairs of ../shared/faces/identities
is accepted (scripts/evaluate.py: 45,201 impostor pairs of 52 people), rounded up to the next 0.05.
The figures behind each entry are in the README's accuracy section and docs/accuracy/.
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK = 0.35


@dataclass(frozen=True)
class Default:
    threshold: float
    basis: str


# By the recogniser file's sha256: a default holds for the weights it was measured on.
BY_FINGERPRINT = {
    "3bc3652792283f9d1aebbc024308bc4a9b567935336dc6bd356394c714b112ec": Default(
        0.35, "measured: w600k_mbf_int8 accepts 1e-4 of impostor pairs at 0.306"),
    "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507": Default(
        0.45, "measured: mobilefacenet_128d accepts 1e-4 of impostor pairs at 0.401"),
    "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f": Default(
        0.35, "w600k_mbf (buffalo_s): the float weights of the measured w600k_mbf_int8"),
    "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43": Default(
        0.35, "w600k_r50 (buffalo_l): not measured here; same WebFace600K training as w600k_mbf and "
              "stronger (IJB-C TAR@FAR=1e-4 97.25% vs 95.02% published), so the mbf threshold is on the safe side"),
}


def default_for(fingerprint: str, recognizer: str) -> Default:
    """The measured default for these weights, else the fallback with a hint to calibrate."""
    found = BY_FINGERPRINT.get(fingerprint)
    if found is not None:
        return found
    return Default(FALLBACK, f"no measured default for {recognizer}: run scripts/evaluate.py or "
                             "scripts/calibrate.py and set RECOGNITION_THRESHOLD")


def in_force(settings, info) -> float:
    """The threshold requests use when they do not send one."""
    return describe(settings, info)["threshold"]


def describe(settings, info) -> dict:
    """The threshold in force and where it came from (also shown in /health)."""
    if settings.RECOGNITION_THRESHOLD is not None:
        return {"threshold": settings.RECOGNITION_THRESHOLD, "basis": "RECOGNITION_THRESHOLD"}
    d = default_for(info.fingerprint, info.recognizer)
    return {"threshold": d.threshold, "basis": d.basis}
