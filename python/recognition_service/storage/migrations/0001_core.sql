-- Students, their face embeddings, and the change log that lets every process refresh its gallery.
CREATE TABLE students (
    student_id  text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE faces (
    face_id           bigserial PRIMARY KEY,
    student_id        text NOT NULL REFERENCES students (student_id) ON DELETE CASCADE,
    model_fingerprint text NOT NULL,
    embedding         bytea NOT NULL,  -- float32, L2-normalised
    det_score         real NOT NULL,
    bbox              real[] NOT NULL,
    image_sha256      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX faces_student_idx ON faces (student_id);
CREATE UNIQUE INDEX faces_same_photo_idx ON faces (student_id, model_fingerprint, image_sha256);

-- One row; its version rises with every face added or removed. Updating it takes a row lock,
-- so gallery writers commit in version order and readers can apply changes incrementally.
CREATE TABLE gallery_state (
    id       int PRIMARY KEY CHECK (id = 1),
    version  bigint NOT NULL
);
INSERT INTO gallery_state VALUES (1, 0);

CREATE TABLE gallery_changes (
    version  bigint PRIMARY KEY,
    face_id  bigint NOT NULL,
    op       char(1) NOT NULL CHECK (op IN ('a', 'd')),
    at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION log_gallery_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE gallery_state SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO gallery_changes (version, face_id, op) VALUES (v, NEW.face_id, 'a');
    ELSE
        INSERT INTO gallery_changes (version, face_id, op) VALUES (v, OLD.face_id, 'd');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER faces_gallery_change AFTER INSERT OR DELETE ON faces
    FOR EACH ROW EXECUTE FUNCTION log_gallery_change();
