#!/usr/bin/env python3
"""Track decisions against single frames: who each names, on camera-like frames of people never seen.

Enrols two photos of most people of ../shared/faces/identities (every fourth person is left out: a
stranger) and makes, from each person's third photo, short "videos": the face placed in a 640x480
frame at a given width, each frame with its own small shift, scale and brightness change, sensor
noise and JPEG compression, as a camera delivers them. Each frame goes through the model; the frames
of one video form one track, named by the service's own code (tracking.Track, track_decision.decide).
Reports, per face width and for faces whose single frames sit just under the threshold: how often one
frame names the person (the model alone, before the SMALL_FACE_PX rule), how often the track does (with
the service's rules: small faces need SMALL_FACE_MIN_VIEWS frames), and every wrong name (of a student or
a stranger).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from recognition_service.config import load_settings
from recognition_service.recognition.engine import Identity, analyse
from recognition_service.recognition.gallery import Gallery
from recognition_service.recognition.images import decode_image
from recognition_service.recognition.model import load_face_model
from recognition_service.recognition.thresholds import in_force
from recognition_service.sessions.track_decision import decide, face_weight, observe
from recognition_service.sessions.tracking import Track

ROOT = Path(__file__).resolve().parent.parent

SIZE = (640, 480)


def camera_frames(photo: np.ndarray, bbox, width: int, count: int, rng) -> list[np.ndarray]:
    """`count` frames of the photo's face at `width` px in the middle of a camera frame, each degraded anew."""
    x1, y1, x2, y2 = bbox
    frames = []
    for _ in range(count):
        scale = width / max(x2 - x1, 1) * rng.uniform(0.97, 1.03)
        cx, cy = SIZE[0] / 2 + rng.uniform(-1.5, 1.5), SIZE[1] / 2 + rng.uniform(-1.5, 1.5)
        matrix = np.float32([[scale, 0, cx - (x1 + x2) / 2 * scale], [0, scale, cy - (y1 + y2) / 2 * scale]])
        frame = cv2.warpAffine(photo, matrix, SIZE, flags=cv2.INTER_AREA, borderValue=(60, 60, 60))
        frame = frame.astype(np.float32) * rng.uniform(0.92, 1.08) + rng.normal(0, 5, frame.shape)
        ok, jpeg = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
        frames.append(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    return frames


def first_face(model, settings, image: np.ndarray):
    faces = analyse(model, decode_image(cv2.imencode(".png", image)[1].tobytes(), max_pixels=settings.MAX_IMAGE_PIXELS,
                                        max_side=settings.DECODE_MAX_SIDE), settings.DET_SIZE)
    return faces[0] if faces else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[14, 18, 22, 28, 40],
                        help="face widths in pixels to try (default 14 18 22 28 40; the README's small-face "
                             "table: 20 24 28 32 40 48 64 80 120)")
    parser.add_argument("--frames", type=int, default=8, help="frames per track (default 8)")
    parser.add_argument("--report", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    shared = Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")
    settings = load_settings(DATABASE_URL="unused", MODEL_DIR=os.environ.get("MODEL_DIR")
                             or str(shared / "models" / "buffalo_s_int8"))
    model = load_face_model(settings.MODEL_DIR, threads=os.cpu_count() or 2, det_threshold=settings.DET_THRESHOLD,
                            concurrency=1, dequantize=settings.MODEL_DEQUANTIZE)
    threshold, margin = in_force(settings, model.info), settings.MATCH_MARGIN
    rng = np.random.default_rng(0)
    people = sorted(p for p in (shared / "faces" / "identities").iterdir() if p.is_dir())
    ids, vectors, probes = [], [], []
    for i, person in enumerate(people):
        photos = sorted(person.iterdir())
        if len(photos) < 3:
            continue
        stranger = i % 4 == 3
        if not stranger:
            for path in photos[:2]:
                face = first_face(model, settings, cv2.imread(str(path)))
                if face is not None:
                    ids.append(person.name)
                    vectors.append(face.embedding)
        shown = cv2.imread(str(photos[2]))
        face = first_face(model, settings, shown)
        if face is not None:
            probes.append((person.name, stranger, shown, face.bbox))
    gallery = Gallery.from_vectors("measure", ids, np.stack(vectors))

    def identify(v):
        return [Identity(m.student_id, m.student_id, m.similarity, m.reason)
                for m in gallery.match(v, threshold=threshold, margin=margin)]

    cases = []
    started = time.perf_counter()
    for name, stranger, shown, bbox in probes:
        for width in args.widths:
            track, frame_names, frame_sims, track_names, impostor_sims = Track(bbox=np.zeros(4)), [], [], [], []
            for n, frame in enumerate(camera_frames(shown, bbox, width, args.frames, rng)):
                face = first_face(model, settings, frame)
                if face is None:
                    continue
                who = identify(face.embedding[None])[0]
                frame_names.append(who.student_id)
                # the closest wrong student: how near a small face comes to being named as someone else
                impostor_sims.append(next(sim for sid, sim in gallery.candidates(face.embedding, 3) if sid != name))
                if not stranger:
                    frame_sims.append(float(gallery.similarity_to(face.embedding[None], name)[0]))
                view = observe(track, face.embedding, face_weight(face.det_score, face.bbox), frame=frame,
                               bbox=np.asarray(face.bbox), now=float(n), signature=None)
                track_names += [s.student_id for s in decide([track], [view], identify, gallery.similarity_to,
                                                             small_px=settings.SMALL_FACE_PX,
                                                             small_min_views=settings.SMALL_FACE_MIN_VIEWS)]
            cases.append({"person": name, "stranger": stranger, "width": width, "frames": len(frame_names),
                          "frame_names": frame_names, "track_names": sorted(set(track_names)),
                          "impostor_similarities": [round(float(v), 4) for v in impostor_sims],
                          "median_frame_similarity": round(float(np.median(frame_sims)), 4) if frame_sims else None})
    summary = {"widths": {}, "just_under": None}

    def tally(group: list[dict]) -> dict:
        known = [c for c in group if not c["stranger"] and c["frames"]]
        wrong = [v for c in group for v in c["impostor_similarities"]]
        strangers = [c for c in group if c["stranger"] and c["frames"]]
        return {
            "known_tracks": len(known),
            "named_by_some_single_frame": sum(c["person"] in c["frame_names"] for c in known),
            "single_frames_named_right": f'{sum(n == c["person"] for c in known for n in c["frame_names"])}'
                                         f' of {sum(c["frames"] for c in known)}',
            "named_by_the_track": sum(c["track_names"] == [c["person"]] for c in known),
            "wrong_names_single_frames": sum(1 for c in group for n in c["frame_names"] if n and n != c["person"]),
            "wrong_names_tracks": sum(1 for c in group for n in c["track_names"] if n != c["person"]),
            "stranger_tracks": len(strangers),
            "strangers_named_by_a_track": sum(1 for c in strangers if c["track_names"]),
            # single frames' similarity to the closest wrong student (the margin to a wrong name)
            "wrong_student_similarity_p99": round(float(np.percentile(wrong, 99)), 3) if wrong else None,
            "wrong_student_similarity_max": round(float(max(wrong)), 3) if wrong else None,
        }

    for width in args.widths:
        summary["widths"][width] = tally([c for c in cases if c["width"] == width])
    under = [c for c in cases if not c["stranger"] and c["median_frame_similarity"] is not None
             and threshold - 0.1 <= c["median_frame_similarity"] < threshold]
    summary["just_under"] = {"rule": f"known tracks whose median single-frame similarity is in "
                                     f"[{threshold - 0.1:.2f}, {threshold:.2f})", **tally(under)}
    summary["all"] = tally(cases)
    text = json.dumps({"date": time.strftime("%Y-%m-%d"), "model": model.info.to_dict()["recognizer"],
                       "threshold": threshold, "margin": margin, "enrolled_people": len(set(ids)),
                       "frames_per_track": args.frames, "seconds": round(time.perf_counter() - started, 1),
                       "summary": summary}, indent=2)
    print(text)
    if args.report:
        args.report.write_text(json.dumps({**json.loads(text), "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
