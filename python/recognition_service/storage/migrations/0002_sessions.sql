-- Recognition sessions (one per class slot at a time), their cameras, recognitions, evidence and events.
-- A session's cameras run in the process that holds its lease (owner, lease_expires_at); every write
-- of an owner is fenced on owner = me, so a process that lost the lease can no longer record anything.
CREATE TABLE sessions (
    session_id        bigserial PRIMARY KEY,
    slot_id           bigint NOT NULL,
    status            text NOT NULL DEFAULT 'starting'
                      CHECK (status IN ('starting', 'running', 'stopping', 'stopped', 'failed')),
    reason            text,
    mode              text,
    callback_type     text,
    callback_url      text NOT NULL,
    student_ids       text[],           -- the roster; NULL = every enrolled student
    threshold         real,
    frame_interval_ms int NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz,
    owner             text,
    lease_expires_at  timestamptz,
    callback_failures int NOT NULL DEFAULT 0,
    last_success_time timestamptz
);
-- At most one live session per slot: a second start answers 409 while the first runs.
CREATE UNIQUE INDEX sessions_live_slot_idx ON sessions (slot_id) WHERE status IN ('starting', 'running', 'stopping');
CREATE INDEX sessions_slot_idx ON sessions (slot_id, session_id DESC);
CREATE INDEX sessions_claim_idx ON sessions (lease_expires_at) WHERE status IN ('starting', 'running');

CREATE TABLE session_cameras (
    session_id  bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    camera_id   bigint NOT NULL,
    url         text NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'failed')),
    failures    int NOT NULL DEFAULT 0,
    last_error  text,
    frames          bigint NOT NULL DEFAULT 0,   -- processed, with the faces detected and embedded in them
    faces_detected  bigint NOT NULL DEFAULT 0,
    faces_embedded  bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, camera_id)
);

CREATE TABLE evidence (
    evidence_id  uuid PRIMARY KEY,
    session_id   bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    student_id   text NOT NULL,
    camera_id    bigint NOT NULL,
    face_path    text NOT NULL,     -- relative to DATA_DIR/evidence
    frame_path   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evidence_created_idx ON evidence (created_at);
CREATE INDEX evidence_student_idx ON evidence (student_id);

-- The first sighting of a student in a session; later sightings only raise best_similarity.
CREATE TABLE session_recognitions (
    session_id       bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    student_id       text NOT NULL,
    name             text NOT NULL,
    camera_id        bigint NOT NULL,
    similarity       real NOT NULL,
    best_similarity  real NOT NULL,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    evidence_id      uuid REFERENCES evidence (evidence_id) ON DELETE SET NULL,
    PRIMARY KEY (session_id, student_id)
);

-- What happened, written in the same transaction as the change it reports (the callback outbox).
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    session_id  bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN ('recognition', 'session_status')),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_session_idx ON events (session_id, id);

-- Every process that runs cameras says it is alive here; sessions are spread by these counts.
CREATE TABLE session_runners (
    runner_id   text PRIMARY KEY,
    host        text NOT NULL,
    pid         int NOT NULL,
    sessions    int NOT NULL DEFAULT 0,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
