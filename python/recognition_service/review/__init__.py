"""Review: faces a session saw but could not name, and what a reviewer decided about them."""
