"""Callbacks to the school's backend: the outbox and the sender."""
