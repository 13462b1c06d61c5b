"""The per-process gallery of enrolled embeddings: refreshed from PostgreSQL's change log, matched with numpy."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_TOP_K = 16  # rows examined per probe to find the two best distinct students


@dataclass(frozen=True)
class Match:
    """The best student for one face; student_id is None when not recognised (see `reason`)."""

    student_id: str | None
    similarity: float | None
    reason: str | None = None


@dataclass(frozen=True)
class _Snapshot:
    emb: np.ndarray    # n x d float32; rows of removed faces are zero
    sidx: np.ndarray   # n int32 student index, -1 for a removed face
    students: tuple[str, ...]
    index: dict[str, int]


class Gallery:
    """Embeddings of one model fingerprint. Readers use an immutable snapshot; refresh swaps it."""

    def __init__(self, fingerprint: str, dim: int):
        self.fingerprint, self.dim = fingerprint, dim
        self.version = -1
        self._lock = threading.Lock()
        self._rows: dict[int, int] = {}          # face_id -> row
        self._emb = np.zeros((0, dim), np.float32)
        self._sidx = np.zeros(0, np.int32)
        self._n = 0
        self._dead = 0
        self._students: list[str] = []
        self._index: dict[str, int] = {}
        self._snap = _Snapshot(self._emb, self._sidx, (), {})

    @classmethod
    def from_vectors(cls, fingerprint: str, student_ids: list[str], vectors: np.ndarray) -> "Gallery":
        """A gallery filled in memory (benchmarks, offline evaluation), not tied to a database."""
        gallery = cls(fingerprint, vectors.shape[1])
        gallery._emb = np.zeros((max(64, len(vectors)), gallery.dim), np.float32)
        gallery._sidx = np.full(len(gallery._emb), -1, np.int32)
        for face_id, (student_id, vec) in enumerate(zip(student_ids, vectors, strict=True)):
            gallery._add(face_id, student_id, np.ascontiguousarray(vec, np.float32).tobytes())
        gallery._publish()
        return gallery

    @property
    def size(self) -> int:
        """Live embeddings in the gallery."""
        return len(self._rows)

    def refresh(self, conn) -> None:
        """Bring the gallery up to date with the database (cheap when nothing changed)."""
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM gallery_state WHERE id = 1")
            latest = cur.fetchone()[0]
        if latest == self.version:
            return
        with self._lock:
            if latest <= self.version:
                return
            if self.version < 0 or not self._apply_changes(conn, latest):
                self._reload(conn, latest)
            self.version = latest
            self._publish()

    def _publish(self) -> None:
        self._snap = _Snapshot(self._emb[: self._n], self._sidx[: self._n], tuple(self._students), dict(self._index))

    def _reload(self, conn, latest: int) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT face_id, student_id, embedding FROM faces WHERE model_fingerprint = %s "
                        "ORDER BY face_id", (self.fingerprint,))
            rows = cur.fetchall()
        self._rows, self._students, self._index = {}, [], {}
        self._emb = np.zeros((max(64, len(rows) * 2), self.dim), np.float32)
        self._sidx = np.full(len(self._emb), -1, np.int32)
        self._n = self._dead = 0
        for face_id, student_id, blob in rows:
            self._add(face_id, student_id, blob)
        log.info("gallery loaded: %d embeddings of %d students (version %d)",
                 len(rows), len(self._students), latest)

    def _apply_changes(self, conn, latest: int) -> bool:
        """Apply logged changes since our version; False when the log has a gap (then reload)."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.op, c.face_id, f.student_id, f.embedding FROM gallery_changes c "
                "LEFT JOIN faces f ON c.op = 'a' AND f.face_id = c.face_id AND f.model_fingerprint = %s "
                "WHERE c.version > %s AND c.version <= %s ORDER BY c.version",
                (self.fingerprint, self.version, latest))
            changes = cur.fetchall()
        if len(changes) != latest - self.version:
            return False
        for op, face_id, student_id, blob in changes:
            if op == "a" and student_id is not None:
                self._add(face_id, student_id, blob)
            elif op == "d":
                self._remove(face_id)
        if self._dead > 1024 and self._dead > self._n // 4:
            self._compact()
        return True

    def _add(self, face_id: int, student_id: str, blob) -> None:
        if face_id in self._rows:
            return
        vec = np.frombuffer(blob, np.float32)
        if vec.shape[0] != self.dim:
            return
        if self._n == len(self._emb):
            # New arrays, so snapshots held by readers stay valid.
            grown = np.zeros((max(64, self._n * 2), self.dim), np.float32)
            grown[: self._n] = self._emb[: self._n]
            sidx = np.full(len(grown), -1, np.int32)
            sidx[: self._n] = self._sidx[: self._n]
            self._emb, self._sidx = grown, sidx
        sid = self._index.get(student_id)
        if sid is None:
            sid = self._index[student_id] = len(self._students)
            self._students.append(student_id)
        self._emb[self._n] = vec
        self._sidx[self._n] = sid
        self._rows[face_id] = self._n
        self._n += 1

    def _remove(self, face_id: int) -> None:
        row = self._rows.pop(face_id, None)
        if row is not None:
            self._sidx[row] = -1
            self._emb[row] = 0.0
            self._dead += 1

    def _compact(self) -> None:
        live = sorted(self._rows.items(), key=lambda item: item[1])
        emb = np.zeros((max(64, len(live) * 2), self.dim), np.float32)
        sidx = np.full(len(emb), -1, np.int32)
        for new_row, (face_id, old_row) in enumerate(live):
            emb[new_row], sidx[new_row] = self._emb[old_row], self._sidx[old_row]
            self._rows[face_id] = new_row
        self._emb, self._sidx, self._n, self._dead = emb, sidx, len(live), 0

    def match(self, probes: np.ndarray, *, threshold: float, margin: float,
              roster: list[str] | None = None) -> list[Match]:
        """Best student per probe row: a student's best face counts; ties closer than margin are refused."""
        snap = self._snap
        if len(probes) == 0:
            return []
        valid = snap.sidx >= 0
        if roster is not None:
            allowed = [snap.index[s] for s in roster if s in snap.index]
            valid &= np.isin(snap.sidx, np.asarray(allowed, np.int32))
        if not valid.any():
            return [Match(None, None, "no_candidates") for _ in range(len(probes))]
        sims = probes.astype(np.float32, copy=False) @ snap.emb.T
        if not valid.all():
            sims[:, ~valid] = -np.inf
        return [self._best(row, snap, threshold, margin) for row in sims]

    @staticmethod
    def _best(sims: np.ndarray, snap: _Snapshot, threshold: float, margin: float) -> Match:
        k = min(_TOP_K, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        best_row = top[0]
        best, best_sid = float(sims[best_row]), snap.sidx[best_row]
        second = -np.inf
        for row in top[1:]:
            if snap.sidx[row] != best_sid and sims[row] > -np.inf:
                second = float(sims[row])
                break
        else:
            if k < len(sims):  # every top row is the same student: look beyond them
                others = (snap.sidx != best_sid) & (snap.sidx >= 0)
                if others.any():
                    second = float(sims[others].max())
        similarity = round(best, 4)
        if best < threshold:
            return Match(None, similarity, "below_threshold")
        if best - second < margin:
            return Match(None, similarity, "ambiguous")
        return Match(snap.students[best_sid], similarity)
