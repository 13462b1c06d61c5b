"""Changing the model: kept crops re-embedded with the next model, and a shadow model compared with the one in use."""
