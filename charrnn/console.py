"""What charrnn shows on the terminal besides training progress: a progress bar for long passes over files."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


BAR_MIN_BYTES = 4 << 20  # smaller corpora encode in well under a second: no progress bar


class FileProgress:
    """progress(what, bytes_done, bytes_total) for a long pass over files: a Rich bar on stderr, started on the
    first call for at least min_bytes (a cache hit, or a small corpus, shows nothing) and quiet when disabled or
    stderr is not a terminal."""

    def __init__(self, enabled: bool = True, min_bytes: int | None = None):
        self.console = stderr_console()
        self.min_bytes = BAR_MIN_BYTES if min_bytes is None else min_bytes
        self.enabled = enabled and self.console.is_terminal
        self._bar: Progress | None = None
        self._task = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled or total < self.min_bytes:
            return
        if self._bar is None:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self._task = self._bar.add_task("", total=total)
            self._bar.start()
        self._bar.update(self._task, description=what, completed=done, total=total)

    def __enter__(self) -> FileProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
