"""Who gets the model next: every camera of a process asks here for a turn (one detector region, or one
batch of embeddings), and the scheduler grants them, at most `concurrency` at once.

Fair by frames: when several cameras wait, the one that has processed the fewest frames gets the next turn.
A camera asking for a frame a second that gets it is never in the way of one that wants more; when the
worker cannot keep up, every camera that wants more than it gets ends up with the same frames per second
(max-min fairness), whatever its frames cost: a busy door camera whose frames need every tile gets as
many frames as a classroom, not the whole model. Adding cameras then spreads the same model time more
thinly; the gate and the tracker keep a late frame's work bounded, so the total never falls.

Among cameras with the same count, one that is part-way through a frame goes first: frames are finished
about two at a time (a turn passes on before its camera asks for the next) rather than all advanced
together (when 32 cameras start at once, the first have their first frame after two frames' work, not
after everyone's).

A camera that was idle (or is new) does not bank frames: on asking, its count is raised to that of the
cameras running or waiting (less `CREDIT_FRAMES`), as an operating system's fair scheduler does with a waking task,
so it cannot hold the model until it has caught up with cameras that ran all along.

`FairQueue` is the decision (pure: no threads, no clock); `ModelScheduler` is it behind a lock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from contextlib import contextmanager

from recognition_service import metrics

CREDIT_FRAMES = 2  # how far behind the waiting cameras a returning camera may start, in frames


class FairQueue:
    """The pure decision: `ask(camera)` says whether it may run now (else it is queued); `done(camera)` ends
    a turn and returns the queued camera that runs next (None: a turn is now free); `frame_done(camera)`
    counts a processed frame (whether or not it needed the model)."""

    def __init__(self, concurrency: int):
        self.free = concurrency
        self.frames: dict[object, float] = {}   # frames processed per camera (raised on asking, see above)
        self._queue: list[tuple[float, int, object]] = []  # (frames, arrival, camera)
        self._running: set = set()  # cameras holding a turn
        self._midframe: set = set()  # cameras that had a turn since their last frame ended
        self._arrival = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def ask(self, camera) -> bool:
        frames = self.frames.get(camera, 0.0)
        contenders = [f for f, _, _ in self._queue] + [self.frames[c] for c in self._running if c is not camera]
        if contenders:  # no banked credit: start near the count of the cameras running or waiting
            frames = max(frames, min(contenders) - CREDIT_FRAMES)
        self.frames[camera] = frames
        if self.free > 0 and not self._queue:
            self.free -= 1
            self._running.add(camera)
            return True
        started = 0.5 if camera in self._midframe else 0.0  # finish a started frame before starting another
        heapq.heappush(self._queue, (frames - started, next(self._arrival), camera))
        return False

    def done(self, camera):
        self._running.discard(camera)
        self._midframe.add(camera)
        if self._queue:
            following = heapq.heappop(self._queue)[2]  # the turn passes on: `free` is unchanged
            self._running.add(following)
            return following
        self.free += 1
        return None

    def frame_done(self, camera) -> None:
        self.frames[camera] = self.frames.get(camera, 0.0) + 1
        self._midframe.discard(camera)

    def forget(self, camera) -> None:
        """A camera that ended: its count goes (the queue never holds it then)."""
        self.frames.pop(camera, None)
        self._midframe.discard(camera)


class ModelScheduler:
    """The FairQueue for threads: `with scheduler.turn(camera):` runs the model when granted."""

    def __init__(self, concurrency: int, clock=time.monotonic):
        self._queue = FairQueue(concurrency)
        self._lock = threading.Lock()
        self._granted: dict[object, threading.Event] = {}
        self.clock = clock

    @contextmanager
    def turn(self, camera):
        asked = self.clock()
        with self._lock:
            now = self._queue.ask(camera)
            if not now:
                event = self._granted[camera] = threading.Event()
        if not now:
            event.wait()  # a granted turn always comes: every turn ends (the `finally` below)
        metrics.CAMERA_TURN_WAIT.observe(self.clock() - asked)
        try:
            yield
        finally:
            self._release(camera)

    def frame_done(self, camera) -> None:
        with self._lock:
            self._queue.frame_done(camera)

    def _release(self, camera) -> None:
        with self._lock:
            following = self._queue.done(camera)
            if following is not None:
                self._granted.pop(following).set()

    def forget(self, camera) -> None:
        with self._lock:
            self._queue.forget(camera)

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._queue.waiting
