"""Training time: elapsed seconds that carry over a resume."""

from __future__ import annotations

import time


class Stopwatch:
    """Elapsed training seconds, resumable (the time of earlier sessions is added)."""

    def __init__(self, already: float = 0.0):
        self.already, self.start = already, time.perf_counter()

    def elapsed(self) -> float:
        return self.already + time.perf_counter() - self.start
