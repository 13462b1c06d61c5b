"""The model scheduler (sessions/scheduler.py): even frames, no starvation, work that never falls with load.

These are simulations on a fake clock with a stand-in detector of fixed cost per region (0.12 s for the
whole frame, 0.09 s for a native tile, 0.04 s for an embedding batch: about this 2-core machine's figures
for a 1080p frame): the decision is pure, so a simulated hour runs in a second and the figures are exact.
The real RegionGate and FaceFinder region plan decide how many regions a frame costs. The end-to-end
check with real cameras and the real model is tests/test_classroom.py::test_twice_the_cameras_do_not_do_less.
"""

from __future__ import annotations

import heapq
import threading
import time

import numpy as np
import pytest
from recognition_service.recognition.detection import DetectionSettings, plan_regions
from recognition_service.sessions.motion import RegionGate
from recognition_service.sessions.scheduler import FairQueue, ModelScheduler

FULL_S, TILE_S, EMBED_S = 0.12, 0.09, 0.04


class SimCamera:
    """A camera in the simulation: asks for a frame every `interval` s (0: as fast as it can); a frame costs
    the turns `turns(now)` returns (their model seconds)."""

    def __init__(self, name: str, interval: float, turns, start: float = 0.0, stop: float = float("inf")):
        self.name, self.interval, self.turns, self.start, self.stop = name, interval, turns, start, stop
        self.frames, self.model_s = 0, 0.0
        self.frame_times: list[float] = []

    def __repr__(self):
        return self.name


def simulate(cameras: list[SimCamera], seconds: float, concurrency: int = 1) -> None:
    """Discrete-event run of the cameras sharing one FairQueue, like camera_worker's loop: a frame is asked
    for when due (the next is due an interval after this one was asked for), then runs its turns one by one."""
    queue = FairQueue(concurrency)
    events: list[tuple[float, int, str, SimCamera]] = []
    order = iter(range(10**9))
    pending: dict[SimCamera, list[float]] = {}
    asked_at: dict[SimCamera, float] = {}

    def push(t, kind, cam):
        heapq.heappush(events, (t, next(order), kind, cam))

    def ask_turn(cam, now):
        if queue.ask(cam):
            run(cam, now)

    def run(cam, now):
        cost = pending[cam].pop(0)
        cam.model_s += cost
        push(now + cost, "done", cam)

    for cam in cameras:
        push(cam.start, "due", cam)
    while events:
        now, _, kind, cam = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "due":
            if now >= cam.stop:
                continue
            asked_at[cam] = now
            pending[cam] = list(cam.turns(now))
            if pending[cam]:
                ask_turn(cam, now)
            else:  # nothing to run on this frame (the gate skipped it)
                queue.frame_done(cam)
                cam.frames += 1
                cam.frame_times.append(now)
                push(max(now, asked_at[cam] + cam.interval), "due", cam)
        else:  # a turn ended
            following = queue.done(cam)
            if following is not None:
                run(following, now)
            if pending[cam]:
                ask_turn(cam, now)
            else:
                queue.frame_done(cam)
                cam.frames += 1
                cam.frame_times.append(now)
                push(max(now, asked_at[cam] + cam.interval), "due", cam)


def fixed(*costs):
    return lambda now: list(costs)


_GRAIN: list[np.ndarray] = []


def grain_frames() -> list[np.ndarray]:
    """Eight 1080p frames of one still class with different sensor grain (made once, shared)."""
    if not _GRAIN:
        rng = np.random.default_rng(0)
        base = rng.integers(60, 200, (1080, 1920, 3), dtype=np.uint8)
        _GRAIN.extend(np.clip(base + rng.normal(0, 2, base.shape[:2])[..., None], 0, 255).astype(np.uint8)
                      for _ in range(8))
    return _GRAIN


def gated_classroom(seed: int, *, moving_every_s: float = 0.0):
    """A still 1080p class seen through the real RegionGate: sensor grain on every frame; with
    `moving_every_s`, one student stands up in one tile that often. Each due region costs its detector
    run; a frame that ran anything also embeds a batch."""
    regions = plan_regions(1920, 1080, DetectionSettings())
    gate = RegionGate(threshold=8.0, max_skip_s=3.0)
    frames = grain_frames()
    state = {"n": seed, "last_move": 0.0}

    def turns(now):
        state["n"] += 1
        frame = frames[state["n"] % len(frames)]
        if moving_every_s and now - state["last_move"] >= moving_every_s:
            state["last_move"] = now
            frame = frame.copy()
            frame[700:900, 1500:1600] = 255 - frame[700:900, 1500:1600]
        due = gate.due(frame, regions, now)
        costs = [TILE_S if regions[i].native else FULL_S for i in due]
        return costs + [EMBED_S] if costs else []
    return turns


def per_camera_fps(cameras, seconds, warmup=0.0):
    return [sum(1 for t in c.frame_times if t >= warmup) / (seconds - warmup) for c in cameras]


def test_equal_cameras_over_capacity_get_equal_frames_and_none_starves():
    # 16 cameras whose frames cost 0.25 s of model time each, asked at 1 frame/s: 4 s of work a second
    # for 1 s of model: each should get a quarter frame a second, evenly; frames cost differently here
    # and there (one camera's frames twice as much): still the same frames per second
    cameras = [SimCamera(f"c{i}", 1.0, fixed(FULL_S, TILE_S, EMBED_S)) for i in range(15)]
    heavy = SimCamera("heavy", 1.0, fixed(FULL_S, TILE_S, EMBED_S, FULL_S, TILE_S, EMBED_S))
    simulate([*cameras, heavy], 600)
    fps = per_camera_fps([*cameras, heavy], 600, warmup=60)
    assert min(fps) > 0, "a camera starved"
    assert min(fps) / max(fps) > 0.95, fps
    assert sum(fps) == pytest.approx(1 / ((FULL_S + TILE_S + EMBED_S) * 17 / 16), rel=0.02)  # never idle


def test_total_work_does_not_fall_as_cameras_are_added_with_the_real_gate():
    """Still classrooms through the real RegionGate: as cameras are added, each gets fewer frames (evenly)
    but the frames processed in all never fall, because a late frame of a still class still costs one
    region at most (the gate's maximum skip refreshes one stale region per frame, not all of them)."""
    totals, seconds = {}, 150
    for count in (4, 8, 16, 32):
        cameras = [SimCamera(f"c{i}", 1.0, gated_classroom(i, moving_every_s=20.0)) for i in range(count)]
        simulate(cameras, seconds)
        fps = per_camera_fps(cameras, seconds, warmup=20)
        totals[count] = sum(fps)
        assert min(fps) / max(fps) > 0.8, (count, fps)
        runs = sum(c.model_s for c in cameras)
        assert runs <= seconds * 1.001  # one model, never two turns at once
    assert totals[8] >= totals[4] * 0.98 and totals[16] >= totals[8] * 0.98 and totals[32] >= totals[16] * 0.98, \
        totals
    assert totals[4] == pytest.approx(4.0, rel=0.05)  # under capacity: every frame asked for


def test_a_busy_door_camera_does_not_stop_the_classrooms():
    """The door wants frames as fast as it can, each costing the whole frame and every tile (0.6 s of model);
    four classrooms want one a second (0.16 s each). Together they want more than the model gives: the door
    and the classrooms get the same frames per second, the door does not take the model."""
    door = SimCamera("door", 0.0, fixed(FULL_S, TILE_S, TILE_S, TILE_S, TILE_S, EMBED_S))
    rooms = [SimCamera(f"room{i}", 1.0, fixed(FULL_S, EMBED_S)) for i in range(4)]
    simulate([door, *rooms], 300)
    fps = per_camera_fps([door, *rooms], 300, warmup=10)
    assert min(fps) / max(fps) > 0.9, fps
    even = 1 / (FULL_S + 4 * TILE_S + EMBED_S + 4 * (FULL_S + EMBED_S))  # each, with the model always busy
    assert fps[1] == pytest.approx(even, rel=0.05)


def test_a_camera_that_asks_for_little_gets_all_it_asks_for():
    """Two cameras want every frame they can get; one wants a frame every 2 s: it gets every one."""
    greedy = [SimCamera(f"g{i}", 0.0, fixed(FULL_S, TILE_S)) for i in range(2)]
    modest = SimCamera("modest", 2.0, fixed(FULL_S, TILE_S, EMBED_S))
    simulate([*greedy, modest], 300)
    assert per_camera_fps([modest], 300, warmup=10)[0] == pytest.approx(0.5, rel=0.02)


def test_a_camera_back_from_a_quiet_spell_does_not_hold_the_model():
    a = SimCamera("a", 0.0, fixed(TILE_S))
    b = SimCamera("b", 0.0, fixed(TILE_S))
    late = SimCamera("late", 0.0, fixed(TILE_S), start=100.0)  # banked nothing while it was away
    simulate([a, b, late], 110)
    share = {c.name: sum(1 for t in c.frame_times if 100 <= t < 110) for c in (a, b, late)}
    assert min(share.values()) >= 0.85 * max(share.values()), share


def test_the_scheduler_bounds_concurrency_and_serves_every_thread():
    """Real threads: 6 cameras, 2 turns at once, each turn sleeping 10 ms (a stand-in for the model)."""
    scheduler = ModelScheduler(2)
    running, peak, served = [0], [0], {i: 0 for i in range(6)}
    lock = threading.Lock()
    stop = time.monotonic() + 1.5

    def camera(i):
        me = object()
        while time.monotonic() < stop:
            with scheduler.turn(me):
                with lock:
                    running[0] += 1
                    peak[0] = max(peak[0], running[0])
                time.sleep(0.01)
                with lock:
                    running[0] -= 1
            scheduler.frame_done(me)  # a frame of one turn
            served[i] += 1
        scheduler.forget(me)

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2
    assert min(served.values()) >= 0.7 * max(served.values()), served
    assert scheduler.waiting == 0


def test_cameras_starting_together_get_their_first_frames_one_after_another():
    """32 cameras start at once, each first frame needing 6 turns: frames are finished two at a time (the
    turn passes on before its camera asks again), so the first cameras have their first frame after about
    two frames' work, not after everyone's (16.6 s here, advancing all together)."""
    cameras = [SimCamera(f"c{i}", 1.0, fixed(FULL_S, TILE_S, TILE_S, TILE_S, TILE_S, EMBED_S)) for i in range(32)]
    simulate(cameras, 60)
    firsts = sorted(c.frame_times[0] for c in cameras if c.frame_times)
    one_frame = FULL_S + 4 * TILE_S + EMBED_S
    assert firsts[0] <= 2.1 * one_frame, firsts[:3]
    assert firsts[15] <= 17 * one_frame, firsts[15]  # half the cameras within about half the work
