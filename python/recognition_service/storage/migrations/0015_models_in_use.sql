-- Which model each running process has loaded (MODEL_DIR or SHADOW_MODEL_DIR), said every minute by its
-- re-embedder and removed when it stops: purge-model refuses a model some process uses, whatever the
-- environment of the shell the tool runs in.
CREATE TABLE models_in_use (
    host         text NOT NULL,
    pid          int NOT NULL,
    fingerprint  text NOT NULL,
    setting      text NOT NULL,          -- MODEL_DIR or SHADOW_MODEL_DIR
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, pid, fingerprint)
);
