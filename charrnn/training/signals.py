"""Ctrl-C and SIGTERM during training: a flag checked at step boundaries, so the run stops after a checkpoint."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager


@contextmanager
def stop_on_signals(repeat_grace_s: float = 0.0):
    """Turn SIGINT/SIGTERM into a flag checked at step boundaries (main thread only); a second signal, say
    during a long evaluation, stops at once (atomic writes keep last.pt whole, the CLI exits 130)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {}
    first_at: list[float] = []

    def handler(signum, _frame):
        # torchrun forwards the terminal's Ctrl-C to workers that already got it from the terminal: there a
        # repeat within a second is that same Ctrl-C, and must not cut short the checkpoint the ranks agreed on.
        if caught and time.monotonic() - first_at[0] >= repeat_grace_s:
            raise KeyboardInterrupt
        if not caught:
            first_at.append(time.monotonic())
            caught.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
