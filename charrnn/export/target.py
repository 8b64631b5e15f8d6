"""Where `charrnn export` may write its --out, and the write itself (atomic). One place for the rule about files
charrnn writes for a user, so that a shared helper can replace it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from charrnn.errors import UserError
from charrnn.run.folder import MARKER, is_run_dir
from charrnn.safe_files import atomic_write

RUN_FILES = ("config.yaml", "vocab.json", "metrics.jsonl", "status.json", MARKER)


def check_out(out: Path, *, overwrite: bool, protected: Iterable[tuple[Path, str]] = ()) -> None:
    """Refuse, in one line that says what to do instead, an --out that must not be written: one in a missing or
    read-only folder, a symbolic link, anything but a regular file, a checkpoint, config or corpus of a run (even
    with --overwrite: `protected` lists (path, what it is) for the run at hand), and an existing file without
    --overwrite."""
    folder = out.parent
    if out.is_symlink():
        raise UserError(f"{out} is a symbolic link; charrnn does not write through links: choose another --out")
    if not folder.exists():
        raise UserError(f"cannot write {out}: the folder {folder} does not exist; create it or choose another --out")
    if not folder.is_dir():
        raise UserError(f"cannot write {out}: {folder} is not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {out}: the folder {folder} is not writable; choose another --out")
    if not out.exists():
        return
    if not out.is_file():
        raise UserError(f"{out} exists and is not a regular file; choose another --out")
    what = _run_file(out, protected)
    if what:
        raise UserError(f"{out} is {what}; charrnn never replaces it: choose another --out")
    if not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it, or choose another --out")


def _run_file(out: Path, protected: Iterable[tuple[Path, str]]) -> str | None:
    """What of a run `out` is (a checkpoint, its config, its corpus, ...), or None."""
    real = out.resolve()
    for path, what in protected:
        if path.is_file() and os.path.samefile(out, path):
            return what
        if path.is_dir() and real.is_relative_to(path.resolve()):
            return f"in {what} {path}"
    if out.suffix == ".pt" and out.parent.name == "checkpoints":
        return "a checkpoint of a run"
    if out.name in RUN_FILES and is_run_dir(out.parent):
        return f"the {out.name} of the run {out.parent}"
    return None


_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def write_out(out: Path, data: bytes) -> None:
    """Write data to out atomically (a crash leaves any previous file whole); a folder refusing the write is a
    UserError, a failure of the disk (full, I/O) stays an OSError."""
    try:
        atomic_write(out, lambda f: f.write(data))
    except OSError as exc:
        if exc.errno not in _USER_ERRNOS:
            raise
        raise UserError(f"cannot write {out} ({exc.strerror or exc}); choose another --out") from None
