-- Frames per second each camera was asked for (one per frame_interval_ms, at most what its stream sends) and
-- processed over the last CAMERA_RATE_WINDOW_S, and when (written with the counters): a camera processing
-- under 80% of what it asked for runs on a worker over capacity (/health warns).
ALTER TABLE session_cameras ADD COLUMN fps_asked real, ADD COLUMN fps_delivered real, ADD COLUMN fps_at timestamptz;
