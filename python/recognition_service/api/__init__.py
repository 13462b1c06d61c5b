"""HTTP API blueprints: health, students, recognition."""
