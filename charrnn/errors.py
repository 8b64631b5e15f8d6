"""What ends a command early: errors a user can cause and fix (one line, exit 2), failures of the work (exit 1)
and a training run stopped by a signal (exit 128 + the signal)."""

from __future__ import annotations

import reprlib
from pathlib import Path

ECHO_LIMIT = 200  # the most characters of a user's value (or path) that an error message repeats


class UserError(Exception):
    """A problem with the user's input (config, file, flag, checkpoint); the message says how to fix it."""


class TrainingFailed(Exception):
    """The work itself failed (for example the loss became NaN); the CLI exits 1."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        super().__init__(f"interrupted at step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """text as is, or its start and end around '[...]' when it is longer than limit."""
    if len(text) <= limit:
        return text
    tail = max(limit // 3, 1)
    return f"{text[: limit - tail - 5]}[...]{text[-tail:]}"


_bounded = reprlib.Repr()
_bounded.maxlevel, _bounded.maxdict, _bounded.maxlist, _bounded.maxtuple = 3, 6, 6, 6
_bounded.maxstring = _bounded.maxother = _bounded.maxlong = ECHO_LIMIT


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """repr(value) for an error message: at most ~limit characters, and quick, however large or deeply nested the
    value (a YAML alias bomb's list would take seconds and megabytes to repr in full)."""
    return shorten(_bounded.repr(value), limit)
