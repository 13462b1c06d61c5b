-- What a teacher and an office need to read a session without ids (issue 27).
-- Optional display fields a backend sends with a session (class name, room, teacher): shown, exported,
-- never used for a decision.
ALTER TABLE sessions ADD COLUMN display jsonb;

-- Who confirmed a recognition made by review (the key that acted); NULL: named by a camera.
ALTER TABLE session_recognitions ADD COLUMN confirmed_by text;

-- When each key last made a request (API or console), written at most once a minute per process.
CREATE TABLE key_usage (
    actor         text PRIMARY KEY,   -- key:<id>, env-key:<fingerprint>
    last_used_at  timestamptz NOT NULL
);
