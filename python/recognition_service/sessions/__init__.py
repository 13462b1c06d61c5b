"""Recognition sessions: SQL, the supervisor, and each session's cameras, tracks and recorder."""
