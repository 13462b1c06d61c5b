-- How each camera's stream is decoded (sessions/cameras.py), written with its rates: the seconds between its
-- keyframes as they arrive, and whether keyframes alone are decoded (they come at least as often as the
-- frames asked for) or every frame (README "Placing a classroom camera": set the keyframe interval).
ALTER TABLE session_cameras ADD COLUMN keyframe_interval_s real, ADD COLUMN keyframes_only boolean;
