"""Who a tracked face is: decided from all the embeddings of its track, never from one frame alone.

A camera sees a face many times, often small, blurred or turned. Each embedding of a track is added to
a weighted sum (weight: detection score times size up to the recogniser's 112 px), and the track is named
from the L2-normalised sum with the same threshold, margin and roster as a photo. Noise that differs
from frame to frame averages out, so a student whose single frames sit just under the threshold is
named after a few frames; a stranger's frames agree with each other, not with a student, and stay
unnamed. A recognition records the best single frame: its similarity and its evidence.

A small face (under SMALL_FACE_PX) carries little detail: its track is named only once it holds
SMALL_FACE_MIN_VIEWS embeddings, never from one frame (docs/small_faces.json measures why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from recognition_service.sessions.tracking import Track, View

# An embedding whose similarity to its track's aggregate is below this belongs to someone else (a change of
# face the appearance check missed): the track starts again from it. Consecutive frames of one person sit
# far above (0.6-0.95), two people far below (impostor pairs: 1 in 10,000 above 0.31 for w600k_mbf).
SAME_PERSON_MIN = 0.3
KEEP_VIEWS = 4  # views an unnamed track keeps for its recognition's evidence (highest weight first)


@dataclass(frozen=True)
class Sighting:
    """A track named as a student in this frame: the best frame's similarity and pixels, for evidence."""

    student_id: str
    name: str
    similarity: float        # of the best single frame of the track to the student
    track_similarity: float  # of the track's aggregate: what named it
    frame: np.ndarray
    bbox: np.ndarray


def face_weight(det_score: float, bbox) -> float:
    """How much one embedding counts: a small or doubtful face counts less."""
    side = min(float(bbox[2] - bbox[0]), float(bbox[3] - bbox[1]))
    return float(det_score) * min(1.0, max(side, 1.0) / 112.0)


def observe(track: Track, embedding: np.ndarray, weight: float, *, frame: np.ndarray, bbox: np.ndarray,
            now: float, signature: np.ndarray | None) -> View:
    """Add one embedding of this frame's face to its track; return the view it makes."""
    if track.count and float(embedding @ track.aggregate()) < SAME_PERSON_MIN:
        track.forget(now)
    track.total = embedding * weight if track.total is None else track.total + embedding * weight
    track.weight += weight
    track.count += 1
    track.largest = max(track.largest, min(float(bbox[2] - bbox[0]), float(bbox[3] - bbox[1])))
    track.embedded_at, track.signature = now, signature
    view = View(embedding, weight, frame, bbox)
    if track.student_id is None:  # its best views: evidence for a recognition, or for a review item
        keep = 1 if track.settled else KEEP_VIEWS  # a settled one (a stranger) keeps its best frame only
        track.views = sorted([*track.views, view], key=lambda v: -v.weight)[:keep]
    else:
        track.views = []  # a named track needs no old frames: let them go
    return view


def decide(tracks: list[Track], views: list[View], identify: Callable[[np.ndarray], list],
           similarity_to: Callable[[np.ndarray, str], np.ndarray], *, small_px: float = 0.0,
           small_min_views: int = 1) -> list[Sighting]:
    """Name the tracks just embedded (`views`: this frame's view of each) from their aggregates.

    `identify(aggregates)` applies the matching rules (engine.identify); `similarity_to(embeddings,
    student_id)` gives single frames' similarities to the named student. A track whose faces were all
    smaller than `small_px` is not named before it holds `small_min_views` embeddings. Returns one
    sighting per track naming a student now.
    """
    ready = [i for i, t in enumerate(tracks)
             if t.student_id is not None or t.largest >= small_px or t.count >= small_min_views]
    tracks, views = [tracks[i] for i in ready], [views[i] for i in ready]
    if not tracks:
        return []
    identities = identify(np.stack([t.aggregate() for t in tracks]))
    sightings = []
    for track, current, who in zip(tracks, views, identities, strict=True):
        if who.student_id is None:
            continue  # not (yet) anyone: a named track keeps its name until its face changes
        if track.student_id is not None and track.student_id != who.student_id:
            # the aggregate now says someone else: its embeddings are mixed. Start again from this face.
            track.forget(track.embedded_at)  # observe() set it to this frame's time
            track.total, track.weight, track.count = current.embedding * current.weight, current.weight, 1
            continue
        candidates = [*track.views, current] if track.student_id is None else [current]
        sims = similarity_to(np.stack([v.embedding for v in candidates]), who.student_id)
        best = int(np.argmax(sims))
        track.student_id, track.views = who.student_id, []
        sightings.append(Sighting(who.student_id, who.name, round(float(sims[best]), 4), float(who.similarity),
                                  candidates[best].frame, candidates[best].bbox))
    return sightings
