-- Per-key request counters in fixed windows, shared by every worker and server (unlogged: counters
-- need no crash safety).
CREATE UNLOGGED TABLE rate_windows (
    bucket        text NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          int NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
