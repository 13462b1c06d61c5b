"""What the start scripts need: preflight checks, logging, malloc tuning."""
