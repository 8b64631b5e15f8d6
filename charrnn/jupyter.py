"""Training progress in a Jupyter notebook: one HTML display, updated in place, with the bar and the eval lines.

Rich draws its live progress in Jupyter only through ipywidgets, a dependency charrnn does not have, and a widget
saved in a notebook shows nothing where the notebook is read without a kernel (a code host). An HTML display
updated through its display id needs nothing beyond IPython, which every kernel has, and a notebook saved after
training keeps the final bar and lines as plain HTML and text.
"""

from __future__ import annotations

import html
import sys
import time

_REDRAW_S = 0.25  # at most this often between redraws: every step would flood the kernel's output channel
_LINES_KEPT = 40  # eval lines shown under the bar (the oldest are dropped first)


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (IPython is never imported here when it is not loaded already)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in str(type(shell)))


class _Lines:
    """The `console` of NotebookProgress: what Tracker prints goes under the bar."""

    def __init__(self, owner: NotebookProgress):
        self.owner = owner

    def print(self, text: str, **_: object) -> None:
        self.owner.lines.append(str(text))
        del self.owner.lines[:-_LINES_KEPT]
        self.owner.draw(force=True)


class NotebookProgress:
    """Stands in for rich.progress.Progress where tracking.Tracker uses it (add_task, update, start, stop and
    console.print), drawing one HTML block in the notebook instead of a terminal bar."""

    def __init__(self, label: str = "train", unit: str = "steps"):
        self.label, self.unit = label, unit
        self.console = _Lines(self)
        self.lines: list[str] = []
        self.total, self.completed, self.fields = 1.0, 0.0, {}
        self._handle = None
        self._drawn_at = self._started = time.monotonic()

    def add_task(self, _description: str, *, total: float, completed: float = 0, **fields: str) -> int:
        self.total, self.completed, self.fields = float(total) or 1.0, float(completed), dict(fields)
        return 0

    def update(self, _task: int, *, completed: float | None = None, **fields: str) -> None:
        if completed is not None:
            self.completed = float(completed)
        self.fields.update(fields)
        self.draw()

    def start(self) -> None:
        from IPython.display import display

        self._drawn_at = self._started = time.monotonic()
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def stop(self) -> None:
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._handle is None or (not force and now - self._drawn_at < _REDRAW_S):
            return
        self._handle.update(self._bundle(), raw=True)
        self._drawn_at = now

    def status(self) -> str:
        """The bar's line of text: train  40%  120/300  loss 1.234  val 1.301  41,000 chars/s  12 s."""
        f = self.fields
        share = min(self.completed / self.total, 1.0)
        return (f"{self.label} {share:4.0%}  {f.get('where', '')}  loss {f.get('loss', '-')}  val {f.get('val', '-')}"
                f"  {f.get('speed', '-')} chars/s  {time.monotonic() - self._started:.0f} s")

    def _bundle(self) -> dict[str, str]:
        share = min(self.completed / self.total, 1.0)
        log = html.escape("\n".join(self.lines))
        body = (f'<div><progress value="{share:.4f}" max="1" style="width: 40ch"></progress> '
                f"<code>{html.escape(self.status())}</code>"
                + (f'<pre style="margin: 0.3em 0 0 0">{log}</pre>' if self.lines else "") + "</div>")
        return {"text/html": body, "text/plain": "\n".join([self.status(), *self.lines])}
