-- The key that signs the console's session cookies: one per database, so every worker and server accepts them.
CREATE TABLE console_secret (
    id     int PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL
);

-- What the enrolment gate measured of each face (eye distance, sharpness, brightness, pose), for the console.
ALTER TABLE faces ADD COLUMN quality jsonb;
