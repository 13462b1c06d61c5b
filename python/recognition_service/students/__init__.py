"""Students and their faces: SQL, and erasure."""
