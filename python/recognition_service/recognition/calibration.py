"""Per-site threshold calibration from the enrolled embeddings, and enrolments that look wrong.

Impostor pairs are two faces of different enrolled students; the threshold for a target
false-accept rate is read off their similarities. Faces that are closer to another student than
to their own student are reported (a photo enrolled under the wrong id, twins, one child enrolled
twice) and left out of the impostor pairs, since they are not impostors but mistakes to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recognition_service.recognition import accuracy


@dataclass
class Enrolled:
    """Every embedding of one model fingerprint, with its face id and student id."""

    fingerprint: str
    face_ids: np.ndarray
    student_ids: np.ndarray
    embeddings: np.ndarray


def fingerprints(conn) -> dict[str, int]:
    """Faces stored per model fingerprint, most first."""
    with conn.cursor() as cur:
        cur.execute("SELECT model_fingerprint, count(*) FROM faces GROUP BY 1 ORDER BY 2 DESC, 1")
        return {fp: n for fp, n in cur.fetchall()}


def load_enrolled(conn, fingerprint: str) -> Enrolled:
    """The enrolled embeddings of one model, ordered by student then face."""
    with conn.cursor() as cur:
        cur.execute("SELECT face_id, student_id, embedding FROM faces WHERE model_fingerprint = %s "
                    "ORDER BY student_id, face_id", (fingerprint,))
        rows = cur.fetchall()
    if not rows:
        return Enrolled(fingerprint, np.zeros(0, np.int64), np.zeros(0, object), np.zeros((0, 0), np.float32))
    emb = np.frombuffer(b"".join(bytes(r[2]) for r in rows), np.float32).reshape(len(rows), -1)
    return Enrolled(fingerprint, np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], object),
                    emb)


def face_report(enrolled: Enrolled, threshold: float, chunk: int = 256) -> list[dict]:
    """Faces that look wrong: like another student, unlike their own student's faces, or probably mislabelled.

    "Probably mislabelled" compares means over whole students, so one wrong photo under student A
    does not also make every real photo of the person it shows look mislabelled.
    """
    order = np.argsort(enrolled.student_ids, kind="stable")
    emb, labels, face_ids = enrolled.embeddings[order], enrolled.student_ids[order], enrolled.face_ids[order]
    students, starts, sizes = np.unique(labels, return_index=True, return_counts=True)
    student_of = np.repeat(np.arange(len(students)), sizes)
    flagged = []
    for lo in range(0, len(emb), chunk):
        sims = emb[lo:lo + chunk] @ emb.T
        means = np.add.reduceat(sims, starts, axis=1)
        for row, i in enumerate(range(lo, min(lo + chunk, len(emb)))):
            s, me = sims[row], student_of[i]
            others = student_of != me
            if not others.any():
                continue
            own_idx = np.flatnonzero(~others)
            own_idx = own_idx[own_idx != i]
            own_max = float(s[own_idx].max()) if len(own_idx) else None
            own_mean = float(s[own_idx].mean()) if len(own_idx) else None
            student_means = means[row] / sizes
            student_means[me] = -np.inf
            j = int(np.flatnonzero(others)[np.argmax(s[others])])
            other = float(s[j])
            problems = []
            if other >= threshold:
                problems.append("resembles_other_student")
            if own_max is not None and own_max < threshold:
                problems.append("unlike_own_faces")
            closest = int(np.argmax(student_means))
            if own_mean is not None and student_means[closest] >= threshold and student_means[closest] > own_mean:
                problems.append("probably_mislabelled")
            if problems:
                flagged.append({"face_id": int(face_ids[i]), "student_id": labels[i],
                                "best_own_similarity": None if own_max is None else round(own_max, 4),
                                "most_similar_student": labels[j], "most_similar_face_id": int(face_ids[j]),
                                "similarity_to_them": round(other, 4), "problems": problems})
    return flagged


def calibrate(enrolled: Enrolled, *, target_far: float, current_threshold: float, class_size: int = 30,
              max_pairs: int = 5_000_000, seed: int = 0, reviewed_impostors: np.ndarray | None = None) -> dict:
    """A recommended threshold for target_far, what it does to genuine pairs, and the enrolments to check.

    `reviewed_impostors`: similarities of camera faces a reviewer rejected to the students they were close
    to (review_items); they join the impostor pairs of enrolled faces."""
    students = np.unique(enrolled.student_ids)
    flagged = face_report(enrolled, current_threshold)
    excluded = {f["face_id"] for f in flagged if "probably_mislabelled" in f["problems"]}
    keep = ~np.isin(enrolled.face_ids, list(excluded))
    genuine, impostor = accuracy.pair_similarities(enrolled.embeddings[keep], enrolled.student_ids[keep],
                                                   max_pairs, seed)
    reviewed = np.asarray(reviewed_impostors if reviewed_impostors is not None else [], np.float32)
    impostor = np.concatenate([np.asarray(impostor, np.float32), reviewed])
    result = {
        "fingerprint": enrolled.fingerprint, "students": int(len(students)), "faces": int(len(enrolled.face_ids)),
        "target_far": target_far, "current_threshold": current_threshold,
        "impostor_pairs": int(len(impostor)), "reviewed_impostor_pairs": int(len(reviewed)),
        "genuine_pairs": int(len(genuine)),
        "excluded_faces": sorted(excluded), "flagged_faces": flagged,
    }
    if len(impostor) == 0:
        result.update(recommended_threshold=None, note="needs at least two enrolled students")
        return result
    threshold = accuracy.threshold_for_far(impostor, target_far)
    if threshold is None:
        # Too few pairs to see a rate that small: these students cannot justify a lower threshold than the
        # one in force, only a higher one when two of them are already more alike than it allows.
        threshold = max(float(np.nextafter(impostor.max(), np.inf)), current_threshold)
        result["note"] = (f"only {len(impostor)} impostor pairs: a false-accept rate of {target_far:g} needs at "
                          f"least {int(np.ceil(1 / target_far))} to measure, so the recommendation is the threshold "
                          "in force, or just above the most similar pair of different students when that is higher")
    measured_far = float(accuracy.accept_rate(impostor, threshold))
    result.update(
        recommended_threshold=math.ceil(threshold * 1e4) / 1e4,  # rounded up: never accepts more than measured
        measured_far=round(measured_far, 7),
        highest_impostor_similarity=round(float(impostor.max()), 4),
        genuine_rejected_at_recommended=(round(1 - float(accuracy.accept_rate(genuine, threshold)), 5)
                                         if len(genuine) else None),
        genuine_rejected_at_current=(round(1 - float(accuracy.accept_rate(genuine, current_threshold)), 5)
                                     if len(genuine) else None),
        far_at_current=round(float(accuracy.accept_rate(impostor, current_threshold)), 7),
        # A stranger is compared with every enrolled student: the chance one of them passes grows with the class.
        # With no impostor pair accepted, 3/n is the 95% upper bound of the rate (the rule of three).
        stranger_named_in_class=round(1 - (1 - (measured_far or min(1.0, 3 / len(impostor)))) ** class_size, 5),
        stranger_estimate_is_upper_bound=measured_far == 0,
        class_size=class_size,
    )
    return result
