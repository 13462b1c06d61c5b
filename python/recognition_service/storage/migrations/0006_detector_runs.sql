-- Frames on which the detector ran (the motion gate skips unchanged ones); earlier frames all ran it.
ALTER TABLE session_cameras ADD COLUMN detector_runs bigint NOT NULL DEFAULT 0;
UPDATE session_cameras SET detector_runs = frames;
