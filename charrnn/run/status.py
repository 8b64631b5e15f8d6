"""How a run stands: status.json in the run folder, written by the trainer as it starts and ends.

`charrnn info` reads it: finished (max_steps), interrupted at step N, failed at step N: reason, running (pid N),
or, when the status says running but no process holds the run any more, killed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from charrnn.run.lock import process_alive
from charrnn.safe_files import atomic_write

FILENAME = "status.json"


def write(run_dir: str | Path, status: str, step: int, detail: str | None = None) -> None:
    """Record the run's status ("running", "finished", "interrupted", "failed") atomically."""
    record = {"status": status, "step": step, "detail": detail, "pid": os.getpid(), "host": socket.gethostname(),
              "time": round(time.time(), 3)}
    path, data = Path(run_dir) / FILENAME, (json.dumps(record) + "\n").encode("utf-8")
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError:
        if not path.is_file():
            raise
        _write_in_place(path, data)


def _write_in_place(path: Path, data: bytes) -> None:
    """On a full disk, where a new file cannot be made: rewrite the old status in its own space (a few hundred
    bytes in a block the file already has), so that a run that failed for want of space does not stay "running"."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))


def read(run_dir: str | Path) -> dict | None:
    """The recorded status, or None for a run folder without one (or an unreadable one)."""
    try:
        record = json.loads((Path(run_dir) / FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("status"), str) else None


def describe(run_dir: str | Path) -> str:
    """One line for `charrnn info`; a run recorded as running is checked against its process."""
    record = read(run_dir)
    if record is None:
        return "unknown (no status.json: the run was made by an older charrnn)"
    status, step = record["status"], record.get("step")
    if status == "finished":
        detail = record.get("detail") or "max_steps"
        return f"finished ({'stopped by: early stop' if detail == 'early_stop' else detail}) at step {step}"
    if status == "interrupted":
        return f"interrupted at step {step}"
    if status == "failed":
        return f"failed at step {step}: {record.get('detail') or 'unknown reason'}"
    pid, host = record.get("pid"), record.get("host", "")
    if process_alive(int(pid or 0), str(host)) is False:
        return f"killed: the process (pid {pid}) ended without saying so; resume from the last checkpoint"
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"running (pid {pid}{where})"
