"""Error rates from similarity scores: ROC, true-accept at a false-accept rate, equal error rate.

Plain numpy functions shared by scripts/evaluate.py and scripts/calibrate.py. A pair is accepted
when its similarity is >= the threshold, exactly as the service decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Roc:
    """Accept rates of genuine and impostor pairs at every distinct threshold, highest threshold first."""

    thresholds: np.ndarray
    tar: np.ndarray  # genuine pairs accepted / genuine pairs
    far: np.ndarray  # impostor pairs accepted / impostor pairs


def roc(genuine: np.ndarray, impostor: np.ndarray) -> Roc:
    """The ROC over every score seen, from accepting nothing to accepting everything."""
    genuine, impostor = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor, [np.inf]]))[::-1]
    return Roc(thresholds=thresholds, tar=accept_rate(genuine, thresholds), far=accept_rate(impostor, thresholds))


def accept_rate(scores: np.ndarray, thresholds) -> np.ndarray:
    """Fraction of `scores` >= each threshold (scores need not be sorted)."""
    scores = np.sort(np.asarray(scores, np.float64))
    if len(scores) == 0:
        return np.full(np.shape(thresholds), np.nan)
    return (len(scores) - np.searchsorted(scores, thresholds, side="left")) / len(scores)


def threshold_for_far(impostor: np.ndarray, target_far: float) -> float | None:
    """The lowest threshold whose false-accept rate is <= target_far, or None when too few pairs measure it.

    Resolving a rate of 1e-4 needs at least 10,000 impostor pairs; with fewer the answer would be a guess.
    """
    impostor = np.sort(np.asarray(impostor, np.float64))
    n = len(impostor)
    if n == 0 or n * target_far < 1:
        return None
    allowed = int(np.floor(n * target_far))  # impostor pairs that may be accepted
    # Accepting at most `allowed`: the threshold sits just above the (allowed+1)-th highest score.
    return float(np.nextafter(impostor[n - allowed - 1], np.inf))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, target_far: float) -> dict:
    """True-accept rate at the threshold that keeps the false-accept rate <= target_far."""
    threshold = threshold_for_far(impostor, target_far)
    if threshold is None:
        return {"far": target_far, "threshold": None, "tar": None,
                "note": f"needs >= {int(np.ceil(1 / target_far))} impostor pairs"}
    return {"far": target_far, "threshold": round(threshold, 4),
            "tar": round(float(accept_rate(genuine, threshold)), 5),
            "far_measured": round(float(accept_rate(impostor, threshold)), 7)}


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> dict:
    """The point where false-reject equals false-accept, and its threshold."""
    curve = roc(genuine, impostor)
    frr = 1 - curve.tar
    i = int(np.argmin(np.abs(frr - curve.far)))
    return {"eer": round(float((frr[i] + curve.far[i]) / 2), 5), "threshold": round(float(curve.thresholds[i]), 4)}


def pair_similarities(emb: np.ndarray, labels: np.ndarray, max_pairs: int, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) similarities of L2-normalised rows: every genuine pair; all impostor pairs or a sample.

    `labels` says whose each row is; with more than `max_pairs` pairs in all, `max_pairs` random impostor pairs.
    """
    n = len(emb)
    genuine, impostor = [], []
    if n * (n - 1) // 2 <= max_pairs:
        for i in range(n - 1):
            s = emb[i + 1:] @ emb[i]
            same = labels[i + 1:] == labels[i]
            genuine.append(s[same])
            impostor.append(s[~same])
    else:
        for student in np.unique(labels):
            idx = np.flatnonzero(labels == student)
            s = emb[idx] @ emb[idx].T
            genuine.append(s[np.triu_indices(len(idx), 1)])
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, n, 2 * max_pairs), rng.integers(0, n, 2 * max_pairs)
        keep = labels[i] != labels[j]
        i, j = i[keep][:max_pairs], j[keep][:max_pairs]
        impostor.append(np.einsum("ij,ij->i", emb[i], emb[j]))
    return _concat(genuine), _concat(impostor)


def _concat(parts: list) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)
