"""API keys, rate limits and which addresses cameras and callbacks may reach."""
