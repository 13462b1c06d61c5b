-- Every key has a role (security/roles.py: admin, backend, teacher, viewer). Keys made before roles could
-- do everything: they stay admin, so nothing a school runs stops working; narrower keys are made anew.
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'admin'
    CHECK (role IN ('admin', 'backend', 'teacher', 'viewer'));
ALTER TABLE api_keys ALTER COLUMN role DROP DEFAULT;

-- Console sign-ins kept server side (the cookie holds only a random id, signed): sign-out, key revocation
-- and an idle timeout end them for every worker and server, and a replayed cookie opens nothing.
CREATE TABLE console_sessions (
    token_hash    text PRIMARY KEY,      -- sha256 of the random id the cookie carries
    actor         text NOT NULL,         -- the key that opened it: key:<id>, env-key:<fingerprint>, anonymous
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    end_reason    text                   -- signed_out, idle, expired, key_gone
);
CREATE INDEX console_sessions_actor_idx ON console_sessions (actor) WHERE ended_at IS NULL;
