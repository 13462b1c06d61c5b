#!/usr/bin/env python3
"""Accuracy of the service's pipeline on a folder of identity subfolders: verification and open-set identification.

Every photo goes through the service's own code: decoding, detection (with the padded retry),
alignment, embedding, the enrolment quality gate and the gallery's matching rule (threshold and
margin). Writes report.json and plot.png (ROC, and error rates against the threshold) to --out.

    .venv/bin/python scripts/evaluate.py --images ../shared/faces/identities --out reports/accuracy
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from recognition_service.config import load_settings
from recognition_service.errors import ApiError
from recognition_service.recognition import accuracy
from recognition_service.recognition.engine import analyse
from recognition_service.recognition.gallery import Gallery
from recognition_service.recognition.images import decode_image
from recognition_service.recognition.model import load_face_model
from recognition_service.recognition.quality import enrolment_face
from recognition_service.recognition.thresholds import in_force
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
FARS = (1e-2, 1e-3, 1e-4)
SWEEP = np.round(np.arange(0.0, 0.8001, 0.01), 2)


@dataclass
class Photo:
    person: str
    path: Path
    embedding: np.ndarray | None = None  # of the largest face, as /recognize would name it first
    enrollable: bool = False             # passes the enrolment rules (one usable face, quality gate)
    refusal: str | None = None


def default_shared() -> Path:
    return Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")


def list_people(folder: Path, max_people: int | None) -> dict[str, list[Path]]:
    people = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            people[d.name] = photos
    if max_people:
        people = dict(itertools.islice(people.items(), max_people))
    return people


def embed_all(model, settings, people: dict[str, list[Path]], quiet: bool) -> list[Photo]:
    photos = [Photo(person, path) for person, paths in people.items() for path in paths]
    for photo in tqdm(photos, desc="embedding", unit="photo", disable=quiet, file=sys.stderr):
        try:
            image = decode_image(photo.path.read_bytes(), max_pixels=settings.MAX_IMAGE_PIXELS,
                                 max_side=settings.DECODE_MAX_SIDE)
        except ApiError as exc:
            photo.refusal = exc.code
            continue
        faces = analyse(model, image, settings.DET_SIZE, with_quality=True)
        if not faces:
            photo.refusal = "no_face"
            continue
        photo.embedding = faces[0].embedding
        face, refusal = enrolment_face(faces, settings)
        photo.enrollable = face is not None
        photo.refusal = refusal.reason if refusal else None
    return photos


def pair_scores(photos: list[Photo], max_impostor: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of every genuine pair and of all (or a random sample of) impostor pairs."""
    usable = [p for p in photos if p.embedding is not None]
    emb = np.stack([p.embedding for p in usable]).astype(np.float32)
    return accuracy.pair_similarities(emb, np.array([p.person for p in usable]), max_impostor, seed)


def verification(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict:
    def stats(x):
        if len(x) == 0:
            return {"pairs": 0}
        return {"pairs": int(len(x)), "mean": round(float(x.mean()), 4), "min": round(float(x.min()), 4),
                "max": round(float(x.max()), 4),
                **{f"p{p}": round(float(np.percentile(x, p)), 4) for p in (1, 5, 50, 95, 99)}}

    return {
        "genuine": stats(genuine), "impostor": stats(impostor),
        "tar_at_far": [accuracy.tar_at_far(genuine, impostor, far) for far in FARS],
        "eer": accuracy.equal_error_rate(genuine, impostor) if len(genuine) and len(impostor) else None,
        "at_threshold": {"threshold": threshold,
                         "false_accept_rate": round(float(accuracy.accept_rate(impostor, threshold)), 6),
                         "false_reject_rate": round(1 - float(accuracy.accept_rate(genuine, threshold)), 6)},
    }


def open_set(photos: list[Photo], k: int, unknown_every: int, margin: float, threshold: float,
             fingerprint: str) -> dict:
    """Enrol k photos of most people, probe the rest and every photo of the people left out."""
    people = sorted({p.person for p in photos})
    unknown = {name for i, name in enumerate(people) if unknown_every and i % unknown_every == unknown_every - 1}
    by_person: dict[str, list[Photo]] = {}
    for p in photos:
        by_person.setdefault(p.person, []).append(p)
    gallery_ids, gallery_vecs, known_probes, unknown_probes = [], [], [], []
    for name in people:
        mine = by_person[name]
        if name in unknown:
            unknown_probes += [p for p in mine if p.embedding is not None]
            continue
        enrolled = [p for p in mine if p.enrollable][:k]
        gallery_ids += [name] * len(enrolled)
        gallery_vecs += [p.embedding for p in enrolled]
        enrolled_paths = {p.path for p in enrolled}
        known_probes += [p for p in mine if p.embedding is not None and p.path not in enrolled_paths and enrolled]
    if not gallery_vecs or not known_probes:
        return {"error": "too few photos: no one could be enrolled with a photo left to probe"}
    gallery = Gallery.from_vectors(fingerprint, gallery_ids, np.stack(gallery_vecs))
    known = np.stack([p.embedding for p in known_probes])
    truth = [p.person for p in known_probes]
    unk = np.stack([p.embedding for p in unknown_probes]) if unknown_probes else np.zeros((0, known.shape[1]))
    rank1 = gallery.match(known, threshold=-2, margin=0)
    curve = []
    for t in sorted(set(SWEEP.tolist()) | {threshold}):
        km = gallery.match(known, threshold=t, margin=margin)
        um = gallery.match(unk, threshold=t, margin=margin) if len(unk) else []
        right = sum(m.student_id == name for m, name in zip(km, truth, strict=True))
        wrong = sum(m.student_id is not None and m.student_id != name for m, name in zip(km, truth, strict=True))
        curve.append({"threshold": t,
                      "identification_rate": round(right / len(km), 5),
                      "false_reject_rate": round(sum(m.student_id is None for m in km) / len(km), 5),
                      "misidentification_rate": round(wrong / len(km), 5),
                      "false_accept_rate": (round(sum(m.student_id is not None for m in um) / len(um), 5)
                                            if len(um) else None)})
    return {
        "enroll_per_person": k, "people_enrolled": len(set(gallery_ids)), "gallery_faces": len(gallery_ids),
        "known_probes": len(known_probes), "people_not_enrolled": len(unknown), "unknown_probes": len(unknown_probes),
        "margin": margin,
        "top1_accuracy": round(sum(m.student_id == name for m, name in zip(rank1, truth, strict=True)) / len(truth), 5),
        "at_threshold": next(c for c in curve if c["threshold"] == threshold),
        "curve": curve,
    }


def plot(report: dict, genuine: np.ndarray, impostor: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    curve = accuracy.roc(genuine, impostor)
    keep = curve.far > 0
    left.semilogx(curve.far[keep], curve.tar[keep], lw=2)
    for point in report["verification"]["tar_at_far"]:
        if point["tar"] is not None:
            left.plot(point["far"], point["tar"], "o", color="C3")
            left.annotate(f"{point['tar']:.3f} @ {point['far']:g}\n(t={point['threshold']:.2f})",
                          (point["far"], point["tar"]), textcoords="offset points", xytext=(6, -24), fontsize=8)
    left.set(xlabel="false-accept rate (impostor pairs)", ylabel="true-accept rate (genuine pairs)",
             title=f"ROC: {len(genuine)} genuine, {len(impostor)} impostor pairs")
    left.grid(True, which="both", alpha=0.3)

    ts = SWEEP
    right.plot(ts, accuracy.accept_rate(impostor, ts), label="verification false accept")
    right.plot(ts, 1 - accuracy.accept_rate(genuine, ts), label="verification false reject")
    ident = report.get("open_set", {}).get("curve")
    if ident:
        xs = [c["threshold"] for c in ident]
        right.plot(xs, [c["false_reject_rate"] for c in ident], "--", label="open set: enrolled not named")
        right.plot(xs, [c["misidentification_rate"] for c in ident], "--", label="open set: wrong student named")
        if ident[0]["false_accept_rate"] is not None:
            right.plot(xs, [c["false_accept_rate"] for c in ident], "--", label="open set: stranger named")
    right.axvline(report["threshold"], color="gray", ls=":", label=f"threshold {report['threshold']}")
    right.set(xlabel="similarity threshold", ylabel="rate (log above 0.001)", title="error rates against threshold")
    right.set_yscale("symlog", linthresh=1e-3)
    right.set_ylim(0, 1.1)
    right.legend(fontsize=8)
    right.grid(True, alpha=0.3)
    fig.suptitle(f"{report['model']['name']} ({report['model']['recognizer']}) on {report['images']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    shared = default_shared()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=shared / "faces" / "identities",
                        help="folder of identity subfolders (default: ../shared/faces/identities)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model pack folder (default: MODEL_DIR, else ../shared/models/buffalo_s_int8)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "accuracy", help="folder for the report")
    parser.add_argument("--threshold", type=float, default=None, help="default: the service's threshold")
    parser.add_argument("--enroll-per-person", type=int, default=2,
                        help="open set: photos enrolled per person (passing the quality gate; default 2)")
    parser.add_argument("--unknown-every", type=int, default=5,
                        help="leave every Nth person out of the gallery as a stranger (0: nobody)")
    parser.add_argument("--max-impostor-pairs", type=int, default=1_000_000,
                        help="all impostor pairs up to this many, else a random sample of this size")
    parser.add_argument("--max-people", type=int, default=None, help="only the first N identities")
    parser.add_argument("--seed", type=int, default=0, help="seed of the impostor-pair sample (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    overrides = {"DATABASE_URL": "unused"}
    model_dir = args.model_dir or (None if os.environ.get("MODEL_DIR") else shared / "models" / "buffalo_s_int8")
    if model_dir:
        overrides["MODEL_DIR"] = str(model_dir)
    settings = load_settings(**overrides)
    model = load_face_model(settings.MODEL_DIR, threads=settings.ORT_THREADS or 2,
                            det_threshold=settings.DET_THRESHOLD, concurrency=1,
                            dequantize=settings.MODEL_DEQUANTIZE)
    threshold = args.threshold if args.threshold is not None else in_force(settings, model.info)
    people = list_people(args.images, args.max_people)
    if len(people) < 2:
        parser.error(f"{args.images} needs at least two identity subfolders with photos")

    started = time.perf_counter()
    photos = embed_all(model, settings, people, args.quiet)
    genuine, impostor = pair_scores(photos, args.max_impostor_pairs, args.seed)
    refusals: dict[str, int] = {}
    for p in photos:
        if p.refusal:
            refusals[p.refusal] = refusals.get(p.refusal, 0) + 1
    report = {
        "images": os.path.relpath(args.images, ROOT), "model": model.info.to_dict() | {"name": model.info.name},
        "threshold": threshold, "people": len(people), "photos": len(photos),
        "photos_without_face": sum(p.embedding is None for p in photos),
        "photos_refused_for_enrolment": refusals,
        "verification": verification(genuine, impostor, threshold),
        "open_set": open_set(photos, args.enroll_per_person, args.unknown_every, settings.MATCH_MARGIN, threshold,
                             model.info.fingerprint),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, genuine, impostor, args.out / "plot.png")
    print(summary(report))
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'plot.png'}")
    return 0


def summary(report: dict) -> str:
    v, o = report["verification"], report["open_set"]
    lines = [f"{report['people']} people, {report['photos']} photos ({report['photos_without_face']} without a face), "
             f"model {report['model']['recognizer']}, threshold {report['threshold']}",
             f"verification: {v['genuine']['pairs']} genuine pairs (mean {v['genuine'].get('mean')}), "
             f"{v['impostor']['pairs']} impostor pairs (max {v['impostor'].get('max')})"]
    for point in v["tar_at_far"]:
        lines.append(f"  TAR @ FAR {point['far']:g}: " + (f"{point['tar']:.4f} (threshold {point['threshold']})"
                                                          if point["tar"] is not None else point["note"]))
    if v["eer"]:
        lines.append(f"  EER {v['eer']['eer']:.4f} at threshold {v['eer']['threshold']}")
    at = v["at_threshold"]
    lines.append(f"  at {at['threshold']}: false accept {at['false_accept_rate']:.5f}, "
                 f"false reject {at['false_reject_rate']:.4f}")
    if "error" in o:
        lines.append(f"open set: {o['error']}")
    else:
        a = o["at_threshold"]
        lines.append(f"open set ({o['people_enrolled']} people x {o['enroll_per_person']} photos enrolled, "
                     f"{o['known_probes']} probes, {o['unknown_probes']} photos of {o['people_not_enrolled']} "
                     f"strangers): top-1 {o['top1_accuracy']:.4f}; at {a['threshold']}: identified "
                     f"{a['identification_rate']:.4f}, not named {a['false_reject_rate']:.4f}, wrong student "
                     f"{a['misidentification_rate']:.4f}, stranger named {a['false_accept_rate']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
