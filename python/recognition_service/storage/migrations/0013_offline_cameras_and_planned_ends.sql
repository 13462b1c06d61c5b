-- A camera that stops answering is `offline` (still retried) rather than dead at once: a PoE camera
-- reboots in 30 to 120 s and a switch restart takes a room's cameras for a minute. `offline_since` is
-- when it went; a session fails only when every camera has been offline for CAMERA_OFFLINE_GRACE_S, and
-- its cameras are then `failed`.
ALTER TABLE session_cameras DROP CONSTRAINT IF EXISTS session_cameras_status_check;
ALTER TABLE session_cameras ADD CONSTRAINT session_cameras_status_check
    CHECK (status IN ('pending', 'active', 'offline', 'failed'));
ALTER TABLE session_cameras ADD COLUMN offline_since timestamptz;

-- A session's planned end (ends_at or duration_s at start, capped by SESSION_MAX_DURATION_S): any process
-- ends it then, so a backend that crashes or forgets to stop a session does not leave cameras running.
ALTER TABLE sessions ADD COLUMN ends_at timestamptz;
CREATE INDEX sessions_ends_idx ON sessions (ends_at) WHERE status IN ('starting', 'running', 'stopping');
