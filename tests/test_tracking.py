"""The face tracker: a name stays with a face, never with a box that now shows someone else (no model needed)."""

from __future__ import annotations

import numpy as np
from recognition_service.sessions.tracking import SAME_FACE_MIN, FaceTracker, face_signature

RNG = np.random.default_rng(7)
BOX = np.array([[100, 100, 200, 200]], np.float32)


def _face() -> np.ndarray:
    """A stand-in aligned face: a smooth random grey image (a signature is all the tracker looks at)."""
    small = RNG.integers(0, 255, (8, 8), dtype=np.uint8)
    return np.kron(small, np.ones((14, 14), np.uint8))


def _recognise(tracker, boxes, faces, now, names):
    """One frame: what the camera worker does with the tracker; returns the indexes it embedded."""
    sigs = [face_signature(f) for f in faces]
    tracks, to_embed = tracker.update(boxes, now, sigs)
    for i in to_embed:
        tracks[i].embedded_at, tracks[i].student_id, tracks[i].signature = now, names[i], sigs[i]
    return to_embed


def test_a_still_face_is_embedded_once_per_reembed_period():
    tracker, face = FaceTracker(reembed_s=3.0), _face()
    embedded = [_recognise(tracker, BOX, [face], t * 0.5, ["ann"]) for t in range(6)]  # 2.5 s
    assert embedded == [[0], [], [], [], [], []]
    assert _recognise(tracker, BOX, [face], 3.0, ["ann"]) == [0]


def test_the_next_person_at_the_same_spot_is_embedded_at_once_and_inherits_no_name():
    tracker = FaceTracker(reembed_s=3.0)
    ann, bob = _face(), _face()
    assert _recognise(tracker, BOX, [ann], 0.0, ["ann"]) == [0]
    assert _recognise(tracker, BOX, [ann], 0.5, ["ann"]) == []
    tracks, to_embed = tracker.update(BOX, 1.0, [face_signature(bob)])  # same box, no empty frame between
    assert to_embed == [0] and tracks[0].student_id is None


def test_two_people_swapping_places_are_both_embedded_again():
    tracker = FaceTracker(reembed_s=3.0)
    ann, bob = _face(), _face()
    left, right = [10, 10, 110, 110], [300, 10, 400, 110]
    boxes = np.array([left, right], np.float32)
    assert _recognise(tracker, boxes, [ann, bob], 0.0, ["ann", "bob"]) == [0, 1]
    assert _recognise(tracker, boxes, [bob, ann], 0.5, ["bob", "ann"]) == [0, 1]  # swapped between frames
    assert [t.student_id for t in tracker.tracks] == ["bob", "ann"]


def test_a_face_passing_in_front_is_noticed_and_the_first_face_comes_back():
    tracker = FaceTracker(reembed_s=10.0)
    ann, bob = _face(), _face()
    _recognise(tracker, BOX, [ann], 0.0, ["ann"])
    assert _recognise(tracker, BOX, [bob], 0.5, ["bob"]) == [0]   # bob's head covers ann's
    assert _recognise(tracker, BOX, [ann], 1.0, ["ann"]) == [0]   # and moves on


def test_small_changes_of_the_same_face_do_not_cost_an_embedding():
    tracker = FaceTracker(reembed_s=10.0)
    face = _face()
    _recognise(tracker, BOX, [face], 0.0, ["ann"])
    for t in range(1, 10):
        noisy = np.clip(face.astype(np.int16) + RNG.integers(-6, 7, face.shape), 0, 255).astype(np.uint8)
        assert float(face_signature(noisy) @ face_signature(face)) >= SAME_FACE_MIN
        assert _recognise(tracker, BOX, [noisy], t * 0.5, ["ann"]) == []


def test_a_camera_that_cannot_keep_up_skips_the_re_embed_timer_but_never_a_change_of_face():
    tracker, ann, bob = FaceTracker(reembed_s=3.0), _face(), _face()
    sigs = lambda f: [face_signature(f)]  # noqa: E731
    assert _recognise(tracker, BOX, [ann], 0.0, ["ann"]) == [0]
    # frames 10 s apart (over capacity): the timer would re-embed on every one; refresh=False does not
    for now in (10.0, 20.0, 30.0):
        assert tracker.update(BOX, now, sigs(ann), refresh=False)[1] == []
    # someone else in the same box is embedded at once, behind or not
    tracks, to_embed = tracker.update(BOX, 40.0, sigs(bob), refresh=False)
    assert to_embed == [0] and tracks[0].student_id is None


def test_a_camera_that_is_behind_settles_an_unnamed_face_after_three_embeddings_not_eight():
    tracker, face = FaceTracker(reembed_s=3.0), _face()
    sig = [face_signature(face)]
    embedded = 0
    for now in range(12):
        tracks, to_embed = tracker.update(BOX, float(now), sig, refresh=False)
        for i in to_embed:  # embedded but never named (a small face, a stranger)
            tracks[i].embedded_at, tracks[i].signature = float(now), sig[0]
            tracks[i].count += 1
            embedded += 1
    assert embedded == 3
    tracks, to_embed = tracker.update(BOX, 12.0, sig)  # keeping up again: it goes on to eight
    assert to_embed == [0]

