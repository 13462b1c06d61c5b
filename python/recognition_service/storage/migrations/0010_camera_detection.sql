-- Where each camera looks for faces (recognition/detection.py): {"mode", "min_face_px", "roi"}; NULL = defaults.
ALTER TABLE session_cameras ADD COLUMN detection jsonb;
-- Detector runs spent on native-resolution tiles (detector_runs counts frames the detector ran on at all).
ALTER TABLE session_cameras ADD COLUMN tile_runs bigint NOT NULL DEFAULT 0;

-- The newest frame of each live camera with the faces found in it, for the installer's camera view
-- (aim, focus, which seats are too far). One row per camera, replaced every CAMERA_PREVIEW_S, deleted
-- with its session (and when the session ends: a picture of the class is kept no longer than needed).
CREATE TABLE camera_previews (
    session_id bigint NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    camera_id bigint NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    width integer NOT NULL,
    height integer NOT NULL,
    faces jsonb NOT NULL,
    jpeg bytea NOT NULL,
    PRIMARY KEY (session_id, camera_id)
);
