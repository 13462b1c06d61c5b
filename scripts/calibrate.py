#!/usr/bin/env python3
"""Recommend a recognition threshold from the students enrolled in the service's database, and list odd enrolments.

Reads the enrolled embeddings (DATABASE_URL, or the embedded PostgreSQL under DATA_DIR: the same
settings as the service), takes every pair of faces of two different students as an impostor pair
(and, from review, each rejected camera face with the students it was close to), and recommends
the lowest threshold whose false-accept rate on those pairs is at most --target-far.
It also lists faces that look like another student (twins, one child enrolled twice) or unlike their
own student's other faces, and those closer to another student than to their own (probably enrolled
under the wrong id: fix or delete them, then run this again).

    .venv/bin/python scripts/calibrate.py --target-far 1e-3
    .venv/bin/python scripts/calibrate.py --json > calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys

from recognition_service.recognition import calibration
from recognition_service.recognition.thresholds import default_for
from recognition_service.review.store import reviewed_impostors
from recognition_service.serving import preflight

PROG = "calibrate"


def pick_fingerprint(conn, settings, wanted: str | None) -> tuple[str, str]:
    """(fingerprint, recogniser name): --fingerprint, else the configured model's, else the most enrolled one."""
    from recognition_service.recognition.model import recognizer_fingerprint, resolve_model_pack

    if wanted:
        return wanted, "given"
    try:
        return recognizer_fingerprint(resolve_model_pack(settings))
    except Exception:  # noqa: BLE001 - no model here: calibrate what was enrolled most
        stored = calibration.fingerprints(conn)
        return (next(iter(stored)), "the model with the most enrolled faces") if stored else ("", "none")


def text(result: dict) -> str:
    lines = [f"{result['students']} students, {result['faces']} faces (model {result['fingerprint'][:12]}), "
             f"{result['impostor_pairs']} impostor pairs ({result['reviewed_impostor_pairs']} from rejected review "
             f"items), {result['genuine_pairs']} genuine pairs"]
    if result.get("recommended_threshold") is None:
        lines.append(f"no recommendation: {result.get('note')}")
    else:
        lines += [
            f"recommended threshold for a false-accept rate of {result['target_far']:g}: "
            f"{result['recommended_threshold']}  (in force now: {result['current_threshold']})",
            f"  impostor pairs accepted at it: {result['measured_far']:g}; highest impostor similarity "
            f"{result['highest_impostor_similarity']}",
            (f"  genuine pairs rejected at it: {result['genuine_rejected_at_recommended']} "
             f"(at {result['current_threshold']}: {result['genuine_rejected_at_current']})"
             if result["genuine_pairs"] else "  no genuine pairs: enrol two or more photos per student to see "
                                               "what the threshold costs them"),
            ("  too few impostor pairs to estimate how often a stranger would be named"
             if result["stranger_estimate_is_upper_bound"] and result["stranger_named_in_class"] > 0.5 else
             f"  a stranger named as one of a class of {result['class_size']}: "
             f"{'at most' if result['stranger_estimate_is_upper_bound'] else 'about'} "
             f"{result['stranger_named_in_class']:.2%} of the time"),
        ]
        if result.get("note"):
            lines.append(f"  note: {result['note']}")
    if result["flagged_faces"]:
        lines.append(f"enrolments to check ({len(result['flagged_faces'])} faces):")
        for f in result["flagged_faces"]:
            own = "-" if f["best_own_similarity"] is None else f["best_own_similarity"]
            lines.append(f"  face {f['face_id']} of {f['student_id']}: {', '.join(f['problems'])} "
                         f"(own best {own}; {f['most_similar_student']} face {f['most_similar_face_id']} "
                         f"at {f['similarity_to_them']})")
        if result["excluded_faces"]:
            lines.append(f"  faces {result['excluded_faces']} were left out of the impostor pairs")
    else:
        lines.append("no enrolment looks wrong")
    if result.get("recommended_threshold") is not None:
        lines.append("apply it: set RECOGNITION_THRESHOLD in the service's environment (or .env) and restart it")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--target-far", type=float, default=1e-3,
                        help="false-accept rate wanted on pairs of different students (default 1e-3)")
    parser.add_argument("--class-size", type=int, default=30,
                        help="students a stranger is compared with, for the estimate printed (default 30)")
    parser.add_argument("--fingerprint", help="model fingerprint to calibrate (default: the configured model's)")
    parser.add_argument("--max-pairs", type=int, default=5_000_000, help="sample impostor pairs beyond this many")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.target_far < 1:
        parser.error("--target-far must be between 0 and 1")

    import psycopg2

    try:
        settings = preflight.load_checked_settings()
        url = preflight.prepare_database(settings, for_serving=False)
    except preflight.PreflightError as exc:
        preflight.fail(PROG, exc)
    conn = psycopg2.connect(url)
    try:
        fingerprint, name = pick_fingerprint(conn, settings, args.fingerprint)
        enrolled = calibration.load_enrolled(conn, fingerprint)
        reviewed = reviewed_impostors(conn, fingerprint)
    finally:
        conn.close()
    if len(enrolled.face_ids) == 0:
        print(f"{PROG}: no enrolled faces for model {fingerprint[:12] or '(none)'}", file=sys.stderr)
        return 1
    current = (settings.RECOGNITION_THRESHOLD if settings.RECOGNITION_THRESHOLD is not None
               else default_for(fingerprint, name).threshold)
    result = calibration.calibrate(enrolled, target_far=args.target_far, current_threshold=current,
                                   class_size=args.class_size, max_pairs=args.max_pairs,
                                   reviewed_impostors=reviewed)
    print(json.dumps(result, indent=1) if args.json else text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
