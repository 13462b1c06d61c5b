"""The per-process gallery of enrolled embeddings: refreshed from PostgreSQL's change log, searched with faiss.

Embeddings are held as float16 in a faiss IndexScalarQuantizer: half the memory of float32 and, since
matching a face is a scan bounded by memory bandwidth, about half the time (100,000 embeddings: 12 ms
per face with a numpy float32 product, 5 ms here). Similarities differ from float32 by under 1e-4.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_TOP_K = 16           # candidates examined per probe to find the two best distinct students
_ROSTER_CACHE = 16    # roster matrices kept per process (camera sessions reuse theirs)


@dataclass(frozen=True)
class Match:
    """The best student for one face; student_id is None when not recognised (see `reason`)."""

    student_id: str | None
    similarity: float | None
    reason: str | None = None


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextmanager
    def read(self):
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _new_index(dim: int):
    import faiss  # imported on first use, in the worker: nothing OpenMP-related exists before fork

    faiss.omp_set_num_threads(1)  # request threads already run in parallel; one scan per thread
    return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                        faiss.METRIC_INNER_PRODUCT))


class Gallery:
    """Embeddings of one model fingerprint, keyed by face id."""

    def __init__(self, fingerprint: str, dim: int):
        self.fingerprint, self.dim = fingerprint, dim
        self.version = -1
        self._refresh_lock = threading.Lock()
        self._rw = _ReadWriteLock()
        self._index = None
        self._student_of: dict[int, int] = {}      # face_id -> student index
        self._faces_of: dict[int, set[int]] = {}   # student index -> face ids
        self._students: list[str] = []
        self._student_index: dict[str, int] = {}
        self._rosters: OrderedDict = OrderedDict()  # (version, roster) -> (face ids, matrix)

    @classmethod
    def from_vectors(cls, fingerprint: str, student_ids: list[str], vectors: np.ndarray) -> "Gallery":
        """A gallery filled in memory (benchmarks, offline evaluation), not tied to a database."""
        gallery = cls(fingerprint, vectors.shape[1])
        gallery._index = _new_index(gallery.dim)
        gallery._add_many(list(range(len(vectors))), student_ids, np.ascontiguousarray(vectors, np.float32))
        gallery.version = 0
        return gallery

    @property
    def size(self) -> int:
        """Live embeddings in the gallery."""
        return len(self._student_of)

    # ---- keeping up with the database -------------------------------------------------------

    def refresh(self, conn) -> None:
        """Bring the gallery up to date with the database (one tiny query when nothing changed)."""
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM gallery_state WHERE id = 1")
            latest = cur.fetchone()[0]
        if latest == self.version:
            return
        with self._refresh_lock:
            if latest <= self.version:
                return
            changes = None if self.version < 0 else self._read_changes(conn, latest)
            rows = self._read_all(conn) if changes is None else None
            with self._rw.write():
                if rows is not None:
                    self._replace(rows)
                    log.info("gallery loaded: %d embeddings of %d students (version %d)",
                             len(rows), len(self._faces_of), latest)
                else:
                    self._apply(changes)
                self.version = latest
                self._rosters.clear()

    def _read_all(self, conn) -> list:
        with conn.cursor() as cur:
            cur.execute("SELECT face_id, student_id, embedding FROM faces WHERE model_fingerprint = %s "
                        "ORDER BY face_id", (self.fingerprint,))
            return cur.fetchall()

    def _read_changes(self, conn, latest: int) -> list | None:
        """Logged changes since our version, or None when the log has a gap (then reload everything)."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.op, c.face_id, f.student_id, f.embedding FROM gallery_changes c "
                "LEFT JOIN faces f ON c.op = 'a' AND f.face_id = c.face_id AND f.model_fingerprint = %s "
                "WHERE c.version > %s AND c.version <= %s ORDER BY c.version",
                (self.fingerprint, self.version, latest))
            changes = cur.fetchall()
        return changes if len(changes) == latest - self.version else None

    def _replace(self, rows) -> None:
        self._index = _new_index(self.dim)
        self._student_of, self._faces_of, self._students, self._student_index = {}, {}, [], {}
        self._add_rows(rows)

    def _apply(self, changes) -> None:
        adds, removes = [], []
        for op, face_id, student_id, blob in changes:
            if op == "a" and student_id is not None:
                adds.append((face_id, student_id, blob))
            elif op == "d":
                self._add_rows(adds)
                adds = []
                removes.append(face_id)
                self._remove(face_id)
        self._add_rows(adds)
        if removes:
            self._index.remove_ids(np.asarray(removes, np.int64))

    def _add_rows(self, rows) -> None:
        rows = [(f, s, b) for f, s, b in rows if f not in self._student_of and len(b) == self.dim * 4]
        if rows:
            vectors = np.frombuffer(b"".join(b for _, _, b in rows), np.float32).reshape(len(rows), self.dim)
            self._add_many([f for f, _, _ in rows], [s for _, s, _ in rows], vectors)

    def _add_many(self, face_ids: list[int], student_ids: list[str], vectors: np.ndarray) -> None:
        for face_id, student_id in zip(face_ids, student_ids, strict=True):
            sid = self._student_index.get(student_id)
            if sid is None:
                sid = self._student_index[student_id] = len(self._students)
                self._students.append(student_id)
            self._student_of[face_id] = sid
            self._faces_of.setdefault(sid, set()).add(face_id)
        self._index.add_with_ids(vectors, np.asarray(face_ids, np.int64))

    def _remove(self, face_id: int) -> None:
        sid = self._student_of.pop(face_id, None)
        if sid is not None:
            faces = self._faces_of[sid]
            faces.discard(face_id)
            if not faces:
                del self._faces_of[sid]

    # ---- matching -------------------------------------------------------------------------

    def match(self, probes: np.ndarray, *, threshold: float, margin: float,
              roster: list[str] | None = None) -> list[Match]:
        """Best student per probe row: a student's best face counts; ties closer than margin are refused."""
        if len(probes) == 0:
            return []
        probes = np.ascontiguousarray(probes, np.float32)
        with self._rw.read():
            if roster is None:
                return self._match_all(probes, threshold, margin)
            return self._match_roster(probes, roster, threshold, margin)

    def similarity_to(self, probes: np.ndarray, student_id: str) -> np.ndarray:
        """Each probe's similarity to the student's best-matching face (-inf when not enrolled)."""
        probes = np.ascontiguousarray(probes, np.float32).reshape(-1, self.dim)
        with self._rw.read():
            sid = self._student_index.get(student_id)
            faces = sorted(self._faces_of.get(sid, ())) if sid is not None else []
            if not faces:
                return np.full(len(probes), -np.inf, np.float32)
            matrix = np.stack([self._index.reconstruct(int(f)) for f in faces])
        return (probes @ matrix.T).max(axis=1)

    def candidates(self, probe: np.ndarray, k: int = 3, roster: list[str] | None = None) -> list[tuple[str, float]]:
        """The k students most similar to one probe (each by their best face), best first."""
        probe = np.ascontiguousarray(probe, np.float32).reshape(1, -1)
        best: dict[int, float] = {}
        with self._rw.read():
            if roster is None:
                n = len(self._student_of)
                if n == 0:
                    return []
                sims, ids = self._index.search(probe, min(n, 64))  # 64 faces: at least 6 students (<= 10 faces each)
                pairs = zip(sims[0], ids[0], strict=True)
            else:
                face_ids, matrix = self._roster_matrix(roster)
                pairs = zip((probe @ matrix.T)[0], face_ids, strict=True)
            for sim, face_id in pairs:
                sid = self._student_of.get(int(face_id)) if face_id >= 0 else None
                if sid is not None:
                    best[sid] = max(best.get(sid, -np.inf), float(sim))
            top = sorted(best.items(), key=lambda item: -item[1])[:k]
            return [(self._students[sid], round(sim, 4)) for sid, sim in top]

    def _match_all(self, probes, threshold, margin) -> list[Match]:
        n = len(self._student_of)
        if n == 0:
            return [Match(None, None, "no_candidates") for _ in probes]
        sims, ids = self._index.search(probes, min(_TOP_K, n))
        out = []
        for i, probe in enumerate(probes):
            out.append(self._decide(sims[i], ids[i], threshold, margin,
                                    lambda sid, p=probe: self._best_outside(p, sid), complete=n <= _TOP_K))
        return out

    def _best_outside(self, probe: np.ndarray, sid: int) -> float:
        """The best similarity among faces of every other student (the rare deep case)."""
        import faiss

        mine = np.fromiter(self._faces_of.get(sid, ()), np.int64)
        if len(mine) >= len(self._student_of):
            return -np.inf
        params = faiss.SearchParameters(sel=faiss.IDSelectorNot(faiss.IDSelectorBatch(mine)))
        sims, ids = self._index.search(probe[None, :], 1, params=params)
        return float(sims[0, 0]) if ids[0, 0] >= 0 else -np.inf

    def _match_roster(self, probes, roster, threshold, margin) -> list[Match]:
        face_ids, matrix = self._roster_matrix(roster)
        if len(face_ids) == 0:
            return [Match(None, None, "no_candidates") for _ in probes]
        all_sims = probes @ matrix.T
        k = min(_TOP_K, len(face_ids))
        owners = np.fromiter((self._student_of[int(f)] for f in face_ids), np.int64, len(face_ids))
        out = []
        for row in all_sims:
            top = np.argpartition(-row, k - 1)[:k]
            top = top[np.argsort(-row[top])]

            def best_outside(sid, row=row):
                others = owners != sid
                return float(row[others].max()) if others.any() else -np.inf

            out.append(self._decide(row[top], face_ids[top], threshold, margin, best_outside,
                                    complete=len(face_ids) <= k))
        return out

    def _roster_matrix(self, roster: list[str]) -> tuple[np.ndarray, np.ndarray]:
        key = (self.version, frozenset(roster))
        cached = self._rosters.get(key)
        if cached is not None:
            self._rosters.move_to_end(key)
            return cached
        face_ids = sorted(f for s in roster if s in self._student_index
                          for f in self._faces_of.get(self._student_index[s], ()))
        ids = np.asarray(face_ids, np.int64)
        matrix = (np.stack([self._index.reconstruct(int(f)) for f in face_ids]) if face_ids
                  else np.zeros((0, self.dim), np.float32))
        self._rosters[key] = (ids, matrix)
        while len(self._rosters) > _ROSTER_CACHE:
            self._rosters.popitem(last=False)
        return ids, matrix

    def _decide(self, sims, ids, threshold, margin, best_outside, complete: bool) -> Match:
        """From candidates sorted best first: the best student, refused below threshold or within margin."""
        best_sid = self._student_of[int(ids[0])]
        best = float(sims[0])
        second = -np.inf
        for sim, face_id in zip(sims[1:], ids[1:], strict=True):
            if face_id >= 0 and self._student_of[int(face_id)] != best_sid:
                second = float(sim)
                break
        else:
            if not complete:  # every candidate is the same student: look beyond them
                second = best_outside(best_sid)
        similarity = round(best, 4)
        if best < threshold:
            return Match(None, similarity, "below_threshold")
        if best - second < margin:
            return Match(None, similarity, "ambiguous")
        return Match(self._students[best_sid], similarity)
