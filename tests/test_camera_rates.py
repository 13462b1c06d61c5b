"""Frames asked for against frames delivered: the meter and the rule (no model, a hand-driven clock)."""

from __future__ import annotations

import pytest
from recognition_service.sessions.camera_worker import RateMeter, short_changed


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_delivered_rate_is_counted_over_a_whole_window_only():
    clock = Clock()
    meter = RateMeter(10.0, clock)
    assert meter.rate() is None
    for _ in range(20):  # 2 frames a second for 10 s
        meter.tick()
        clock.now += 0.5
    assert meter.rate() == pytest.approx(2.0, abs=0.15)
    clock.now += 5.0  # the camera stalls: the window empties
    assert meter.rate() == pytest.approx(1.0, abs=0.15)
    clock.now += 10.0
    assert meter.rate() == 0.0


def test_a_camera_is_short_changed_under_80_percent_of_what_it_asked_for():
    assert short_changed(1.0, 0.7) and not short_changed(1.0, 0.85)
    assert not short_changed(None, 0.1)      # "as many as it can" is never short-changed
    assert not short_changed(1.0, None)      # not measured yet
