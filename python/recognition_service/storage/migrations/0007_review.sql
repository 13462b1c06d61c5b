-- Review: faces a session's cameras saw but could not name, one item per person, until someone decides.
ALTER TABLE evidence ALTER COLUMN student_id DROP NOT NULL;  -- a review item's evidence names nobody yet

CREATE TABLE review_items (
    item_id             uuid PRIMARY KEY,
    session_id          bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'rejected')),
    reason              text NOT NULL,       -- below_threshold | ambiguous | no_candidates
    camera_id           bigint NOT NULL,
    model_fingerprint   text NOT NULL,
    embedding           bytea NOT NULL,      -- float32, L2-normalised: the tracks' aggregate (grouping, enrol)
    weight              real NOT NULL,       -- of the tracks merged into it
    tracks              int NOT NULL DEFAULT 1,
    candidates          jsonb NOT NULL,      -- [{"student_id", "similarity"}], best first, at most 3
    evidence_id         uuid REFERENCES evidence (evidence_id) ON DELETE CASCADE,  -- retention removes both
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    resolved_student_id text,
    resolved_by         text,
    resolved_at         timestamptz
);
CREATE INDEX review_items_session_idx ON review_items (session_id, status);

-- A rejected item's nearest students: impostor pairs measured on real camera faces, for calibration.
CREATE TABLE impostor_pairs (
    id                bigserial PRIMARY KEY,
    item_id           uuid NOT NULL,
    student_id        text NOT NULL,
    model_fingerprint text NOT NULL,
    similarity        real NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX impostor_pairs_student_idx ON impostor_pairs (student_id);
