"""One writer per run folder: an exclusive `flock` on `<run>/.lock`, held while a run trains.

The kernel drops the lock when its process dies, however it dies (kill -9, power loss), so a stale lock never
blocks: the file may stay behind, but without a live holder it is taken at once. The file records the holder's
pid and host, so a refusal can say who is training and how to stop it. Readers (`sample`, `eval`, `info`)
never take the lock: checkpoints are replaced atomically, so they always read a complete one.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import UserError
from charrnn.safe_files import process_alive

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_NAME = ".lock"  # charrnn's own file in a run folder, like config.yaml: --overwrite keeps it while locked


@dataclass(frozen=True)
class Holder:
    """The process that holds (or last held) a run folder's lock."""

    pid: int
    host: str

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()


@contextmanager
def hold_run_folder(root: str | Path, *, create: bool = True, enabled: bool = True) -> Iterator[None]:
    """Hold the run folder's lock while the block runs; if a live process holds it, raise a UserError that names
    it, having touched nothing. create: make the folder if it is missing (a new run); a folder made here that
    is left with nothing in it (the run failed before writing anything) is removed again on the way out.
    Without create, or when not enabled (ranks other than 0), a missing folder is not locked."""
    root = Path(root)
    if not enabled or fcntl is None:
        yield
        return
    made = _make_folder(root) if create else []
    if not root.is_dir():  # not creatable, or a file: the run folder checks say so in their own words
        yield
        return
    try:
        fd = _acquire(root)
    except BaseException:
        _remove_if_empty(made)
        raise
    try:
        yield
    finally:
        _release(root, fd)
        _remove_if_empty(made)


def lock_holder(root: str | Path) -> Holder | None:
    """Who is training this run folder now, going by the lock file: None when no process on this host holds it.
    (A pid check, for display only: to write, take the lock with hold_run_folder.)"""
    holder = _read_holder(Path(root) / LOCK_NAME)
    if holder is None or not holder.here:
        return holder
    return holder if process_alive(holder.pid, holder.host) else None


def _make_folder(root: Path) -> list[Path]:
    """Create root and its missing parents; return the folders created, innermost first."""
    missing = []
    for folder in (root, *root.parents):
        if folder.exists():
            break
        missing.append(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return []
    return missing


def _acquire(root: Path) -> int:
    path = root / LOCK_NAME
    for _ in range(100):  # only loops while other processes remove the lock file under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a run that failed before writing removed its new folder meanwhile
            root.mkdir(parents=True, exist_ok=True)
            continue
        except (PermissionError, OSError) as exc:
            if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                raise UserError(f"run folder {root} is not writable; make it writable (chmod -R u+w) "
                                "or choose another --run-dir") from None
            raise UserError(f"cannot lock the run folder {root}: {path} ({exc.strerror or exc}); "
                            "choose another --name or --run-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(_busy_message(root, _wait_for_holder(path))) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:  # else the previous holder unlinked it on release: lock the file that is there now
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
            return fd
        os.close(fd)
    raise UserError(f"cannot lock the run folder {root}: its lock file keeps changing; try again")


def _release(root: Path, fd: int) -> None:
    # Unlinked while still held: whoever opened the old file sees it is no longer the lock file and retries.
    (root / LOCK_NAME).unlink(missing_ok=True)
    os.close(fd)


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only if empty: a run that wrote anything keeps its folder
        except OSError:
            return


def _read_holder(path: Path) -> Holder | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(record["pid"]), str(record["host"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _wait_for_holder(path: Path, patience_s: float = 1.0) -> Holder | None:
    """The holder named in the lock file; a process that has just taken the lock writes it a moment later."""
    deadline = time.monotonic() + patience_s
    while (holder := _read_holder(path)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder


def _busy_message(root: Path, holder: Holder | None) -> str:
    if holder is None:
        return f"{root} is being trained by another process; wait for it to finish or stop it"
    where = f"this host ({holder.host})" if holder.here else f"host {holder.host}"
    return (f"{root} is being trained by pid {holder.pid} on {where}; wait for it to finish or stop it "
            f"(kill {holder.pid}{'' if holder.here else f' on {holder.host}'})")
