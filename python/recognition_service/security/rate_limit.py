"""Per-key request limits in fixed windows kept in PostgreSQL, so every worker and server shares them."""

from __future__ import annotations

import math


def blocked(conn, bucket: str, limit: int, window_s: int) -> float | None:
    """Without counting: None while the bucket's current window is within the limit, else its Retry-After."""
    with conn.cursor() as cur:
        cur.execute("""SELECT hits, extract(epoch FROM window_start + make_interval(secs => %s) - now())
                       FROM rate_windows
                       WHERE bucket = %s AND window_start = to_timestamp(floor(extract(epoch FROM now()) / %s) * %s)""",
                    (window_s, bucket, window_s, window_s))
        row = cur.fetchone()
    if row is None or row[0] < limit:
        return None
    return max(1.0, math.ceil(float(row[1])))


def hit(conn, bucket: str, limit: int, window_s: int) -> float | None:
    """Count one request; return None when allowed, else the seconds until the window ends (Retry-After)."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO rate_windows (bucket, window_start, hits)
                       VALUES (%s, to_timestamp(floor(extract(epoch FROM now()) / %s) * %s), 1)
                       ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_windows.hits + 1
                       RETURNING hits, extract(epoch FROM window_start + make_interval(secs => %s) - now())""",
                    (bucket, window_s, window_s, window_s))
        hits, remaining = cur.fetchone()
        if hits == 1:  # a new window: forget finished ones now and then
            cur.execute("""DELETE FROM rate_windows
                           WHERE bucket = %s AND window_start < now() - make_interval(secs => %s)""",
                        (bucket, window_s))
    if hits <= limit:
        return None
    return max(1.0, math.ceil(float(remaining)))
