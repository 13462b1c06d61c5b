"""How much disk the service's data takes (the data folder, its evidence, the database) and how much is left:
for the service page, so an IT person sees a disk filling before it is full. Walking a folder of months of
evidence takes a while, so each process walks at most every WALK_EVERY_S."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

WALK_EVERY_S = 300.0
_cache: dict[Path, tuple[float, int]] = {}
_lock = threading.Lock()


def folder_bytes(path: Path) -> int:
    """The size of every file under `path` (0 when it does not exist), remembered for WALK_EVERY_S."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(path)
    if hit is not None and now - hit[0] < WALK_EVERY_S:
        return hit[1]
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile (retention), or unreadable: not ours to count
    with _lock:
        _cache[path] = (now, total)
    return total


def usage(data_dir: Path, evidence_dir: Path, conn) -> dict:
    """Bytes used by the data folder, by its evidence and by the database, and the disk's free bytes."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        database = int(cur.fetchone()[0])
    disk = shutil.disk_usage(data_dir if data_dir.exists() else data_dir.parent)
    return {"data_dir": str(data_dir), "data_bytes": folder_bytes(data_dir),
            "evidence_bytes": folder_bytes(evidence_dir), "database_bytes": database,
            "disk_free_bytes": disk.free, "disk_total_bytes": disk.total}
