"""Retention of delivered callbacks: a delivered callback and its events go after DELIVERED_RETENTION_DAYS."""

from __future__ import annotations


def delete_expired_deliveries(conn, retention_days: float) -> int:
    """Delete delivered callbacks (and their events) older than the retention; return how many."""
    with conn.cursor() as cur:
        cur.execute("""DELETE FROM events WHERE delivery_id IN (
                           SELECT delivery_id FROM deliveries
                           WHERE status = 'delivered' AND delivered_at < now() - make_interval(secs => %s))""",
                    (retention_days * 86400,))
        cur.execute("""DELETE FROM deliveries WHERE status = 'delivered'
                       AND delivered_at < now() - make_interval(secs => %s)""", (retention_days * 86400,))
        return cur.rowcount
