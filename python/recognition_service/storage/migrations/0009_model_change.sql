-- What a model change needs: each enrolled photo's aligned face crop (so a new model can embed it again
-- without a new photo), the re-embedding jobs (claimed through a lease, like sessions), and how often a
-- shadow model agrees with the model in use.

-- One crop per enrolled photo of a student (the photo itself is never kept). Erased with the student
-- (cascade) and with the photo's faces (students/store.py delete_face).
CREATE TABLE face_crops (
    student_id    text NOT NULL REFERENCES students (student_id) ON DELETE CASCADE,
    image_sha256  text NOT NULL,
    crop          bytea NOT NULL,  -- PNG of the aligned 112x112 BGR crop the recogniser sees
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, image_sha256)
);

-- Finding a photo's embedding under a given model (the re-embedding job's anti-join, purges).
CREATE INDEX faces_photo_model_idx ON faces (student_id, image_sha256, model_fingerprint);

-- One row per model whose embeddings are being (or were) made from the kept crops.
CREATE TABLE reembedding_jobs (
    model_fingerprint text PRIMARY KEY,
    model_name        text NOT NULL,
    owner             text,              -- the runner holding the lease, NULL when nobody works on it
    lease_expires_at  timestamptz,
    embedded          bigint NOT NULL DEFAULT 0,             -- crops embedded and committed, all runs
    busy_seconds      double precision NOT NULL DEFAULT 0,   -- time spent embedding them
    runs              int NOT NULL DEFAULT 0,                -- claims by a new owner (1 + resumptions)
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- How often the shadow model names the same student (or the same "unknown") as the model in use.
CREATE TABLE shadow_agreement (
    active_fingerprint  text NOT NULL,
    shadow_fingerprint  text NOT NULL,
    compared            bigint NOT NULL DEFAULT 0,
    agreed              bigint NOT NULL DEFAULT 0,
    only_active_named   bigint NOT NULL DEFAULT 0,
    only_shadow_named   bigint NOT NULL DEFAULT 0,
    named_differently   bigint NOT NULL DEFAULT 0,
    since               timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (active_fingerprint, shadow_fingerprint)
);
