"""Tracks and their decisions with synthetic embeddings of controlled similarity (no model needed).

Each person has an enrolled vector; a camera frame of them is an embedding at a chosen similarity to it,
made of a part shared by all their frames (their pose and light in this camera) and a part that differs
from frame to frame (noise), as real video frames are. A frame's pixels are stood in for by a small
image unique to the person, so the tracker's appearance check and the evidence can be checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
from recognition_service.recognition.engine import Identity
from recognition_service.recognition.gallery import Gallery
from recognition_service.sessions.track_decision import SAME_PERSON_MIN, decide, face_weight, observe
from recognition_service.sessions.tracking import SETTLE_AFTER, FaceTracker, face_signature

DIM = 512
THRESHOLD, MARGIN = 0.35, 0.03
LEFT, RIGHT = [40, 40, 200, 200], [400, 40, 560, 200]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


class Person:
    def __init__(self, rng, enrolled: np.ndarray | None, similarity: float, shared: float = 0.7):
        self.rng = rng
        self.enrolled = enrolled if enrolled is not None else _unit(rng.normal(size=DIM))
        self.similarity, self.shared = similarity, shared
        self.view = _unit(rng.normal(size=DIM))  # how this camera sees them, the same in every frame
        small = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        self.face = np.kron(small, np.ones((14, 14), np.uint8))  # stands in for the aligned crop

    def frame_embedding(self) -> np.ndarray:
        """An embedding whose similarity to the enrolled vector is about `similarity`."""
        noise = _unit(self.rng.normal(size=DIM))
        off = _unit(self.shared * self.view + np.sqrt(1 - self.shared ** 2) * noise)
        off = _unit(off - (off @ self.enrolled) * self.enrolled)  # orthogonal to the enrolled vector
        c = self.similarity
        return _unit(c * self.enrolled + np.sqrt(1 - c ** 2) * off)


class Camera:
    """What camera_worker.process does with the tracker and the decision, on given faces."""

    def __init__(self, gallery: Gallery, roster=None, reembed_s: float = 10.0):
        self.tracker, self.gallery, self.roster = FaceTracker(reembed_s), gallery, roster
        self.sightings, self.embedded, self.t = [], 0, 0.0

    def identify(self, vectors):
        return [Identity(m.student_id, m.student_id, m.similarity, m.reason)
                for m in self.gallery.match(vectors, threshold=THRESHOLD, margin=MARGIN, roster=self.roster)]

    def frame(self, people_at: list[tuple[Person, list[int]]]) -> list:
        self.t += 1.0
        boxes = np.array([box for _, box in people_at], np.float32).reshape(-1, 4)
        sigs = [face_signature(p.face) for p, _ in people_at]
        tracks, to_embed = self.tracker.update(boxes, self.t, sigs)
        self.embedded += len(to_embed)
        views = [observe(tracks[i], people_at[i][0].frame_embedding(), face_weight(0.9, boxes[i]),
                         frame=people_at[i][0].face, bbox=boxes[i], now=self.t, signature=sigs[i])
                 for i in to_embed]
        found = decide([tracks[i] for i in to_embed], views, self.identify,
                       lambda v, sid: self.gallery.similarity_to(v, sid))
        self.sightings += found
        return found


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture
def school(rng):
    """Twenty enrolled students and a gallery of them."""
    ids = [f"s{i:02d}" for i in range(20)]
    vectors = np.stack([_unit(rng.normal(size=DIM)) for _ in ids])
    return ids, vectors, Gallery.from_vectors("synthetic", ids, vectors)


def _shows(sighting, person: Person) -> bool:
    return sighting.frame is person.face


def test_a_student_whose_every_frame_is_under_the_threshold_is_named_by_the_track(rng, school):
    ids, vectors, gallery = school
    ann = Person(rng, vectors[3], similarity=0.31)  # each frame alone: below 0.35, not named
    single = [gallery.match(ann.frame_embedding()[None], threshold=THRESHOLD, margin=MARGIN)[0] for _ in range(20)]
    assert all(m.student_id is None for m in single) and max(m.similarity for m in single) < THRESHOLD
    camera = Camera(gallery)
    for _ in range(SETTLE_AFTER):
        camera.frame([(ann, LEFT)])
    assert [s.student_id for s in camera.sightings] == ["s03"]
    seen = camera.sightings[0]
    assert seen.track_similarity >= THRESHOLD > seen.similarity  # named by the track, best frame reported
    assert _shows(seen, ann)


def test_a_stranger_is_never_named_however_long_they_stay(rng, school):
    _, _, gallery = school
    stranger = Person(rng, None, similarity=0.0)
    camera = Camera(gallery, reembed_s=0.0)  # embedded on every frame: the most chances to go wrong
    for _ in range(60):
        camera.frame([(stranger, LEFT)])
    assert camera.sightings == []


def test_a_stranger_settles_and_is_then_embedded_only_on_the_timer(rng, school):
    _, _, gallery = school
    stranger = Person(rng, None, similarity=0.0)
    camera = Camera(gallery, reembed_s=10.0)
    for _ in range(40):
        camera.frame([(stranger, LEFT)])
    assert camera.embedded == SETTLE_AFTER + 3  # frames 9..40: re-embedded at 18, 28, 38
    assert camera.sightings == []


def test_a_queue_at_one_spot_names_everyone_once_and_nobody_from_another_face(rng, school):
    ids, vectors, gallery = school
    queue = [Person(rng, vectors[i], similarity=0.5) for i in range(10)]
    camera = Camera(gallery)
    for person in queue:
        for _ in range(2):  # two processed frames each, no empty frame between people
            camera.frame([(person, LEFT)])
    assert [s.student_id for s in camera.sightings] == ids[:10]
    for seen, person in zip(camera.sightings, queue, strict=True):
        assert _shows(seen, person)


def test_two_people_swapping_places_are_both_renamed_with_no_wrong_sighting(rng, school):
    ids, vectors, gallery = school
    ann, bob = Person(rng, vectors[0], 0.55), Person(rng, vectors[1], 0.55)
    camera = Camera(gallery)
    camera.frame([(ann, LEFT), (bob, RIGHT)])
    found = camera.frame([(bob, LEFT), (ann, RIGHT)])  # swapped between two frames
    assert sorted(s.student_id for s in found) == ["s00", "s01"]
    assert [t.student_id for t in camera.tracker.tracks] == ["s01", "s00"]
    for seen in camera.sightings:
        assert _shows(seen, ann if seen.student_id == "s00" else bob)


def test_a_face_passing_in_front_of_another_is_never_named_as_them(rng, school):
    ids, vectors, gallery = school
    ann, bob = Person(rng, vectors[0], 0.55), Person(rng, vectors[1], 0.55)
    camera = Camera(gallery)
    camera.frame([(ann, LEFT)])
    camera.frame([(bob, LEFT)])  # bob's head covers ann's for a frame
    camera.frame([(ann, LEFT)])
    for seen in camera.sightings:
        assert _shows(seen, ann if seen.student_id == "s00" else bob)
    assert {s.student_id for s in camera.sightings} == {"s00", "s01"}


def test_an_embedding_far_from_its_track_starts_the_track_again(rng, school):
    """A change of face the appearance check missed (same thumbnail) is caught by the embeddings."""
    ids, vectors, gallery = school
    ann, bob = Person(rng, vectors[0], 0.55), Person(rng, vectors[1], 0.55)
    bob.face = ann.face  # look-alike thumbnails
    camera = Camera(gallery, reembed_s=0.0)
    for _ in range(3):
        camera.frame([(ann, LEFT)])
    assert float(bob.frame_embedding() @ camera.tracker.tracks[0].aggregate()) < SAME_PERSON_MIN
    camera.frame([(bob, LEFT)])
    assert [s.student_id for s in camera.sightings][-1] == "s01"
    assert camera.tracker.tracks[0].count == 1


def test_a_roster_leaves_out_enrolled_students_who_are_not_on_it(rng, school):
    ids, vectors, gallery = school
    ann, bob = Person(rng, vectors[0], 0.6), Person(rng, vectors[1], 0.6)
    camera = Camera(gallery, roster=["s00"])
    for _ in range(SETTLE_AFTER):
        camera.frame([(ann, LEFT), (bob, RIGHT)])
    assert [s.student_id for s in camera.sightings] == ["s00"]


def test_small_and_doubtful_faces_count_less():
    assert face_weight(0.9, [0, 0, 112, 112]) == pytest.approx(0.9)
    assert face_weight(0.9, [0, 0, 300, 300]) == pytest.approx(0.9)   # no more than full size
    assert face_weight(0.9, [0, 0, 28, 40]) == pytest.approx(0.225)
    assert face_weight(0.5, [0, 0, 112, 112]) < face_weight(0.9, [0, 0, 112, 112])
