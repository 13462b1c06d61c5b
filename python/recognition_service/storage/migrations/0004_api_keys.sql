-- API keys (only their sha256 is stored) and an audit log of enrolments, deletions and key changes.
CREATE TABLE api_keys (
    key_id      bigserial PRIMARY KEY,
    name        text NOT NULL,
    key_hash    text NOT NULL UNIQUE,  -- sha256 hex of the key
    prefix      text NOT NULL,         -- first characters, to recognise a key in lists
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,   -- "key:<id>", "env-key:<n>", "cli", "anonymous"
    action   text NOT NULL,
    target   text,
    details  jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
