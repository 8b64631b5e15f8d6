"""Writing files safely.

Every file charrnn writes goes through a temporary file in the same folder, fsync, then a rename, so a crash or a
full disk leaves the previous file intact (atomic_write).

A file written for a user at a path they name (`inspect --out`, `export --out`) follows one more rule
(check_user_output, write_user_file): charrnn writes a new regular file, or replaces a file it wrote itself,
recognised by the stamp `charrnn-output:` in its first 512 bytes (output_stamp). Any other file is replaced only
with --overwrite, and some never are, --overwrite or not: a checkpoint (any PyTorch file), a file of a run folder,
a file the command reads (the run's corpus, the text being inspected), a folder, a link, a device, a pipe or a
socket."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from charrnn.errors import TrainingFailed, UserError

RUN_MARKER = ".charrnn-run"  # in every run folder charrnn creates: {"tool": "charrnn", "version": ...}

OUTPUT_STAMP = "charrnn-output:"  # in the first STAMP_WINDOW bytes of every file charrnn writes for a user

STAMP_WINDOW = 512


def writer_id() -> str:
    """Names this process's temporary files: nodes of a torchrun job may share a folder (and a pid)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_alive(pid: int, host: str) -> bool | None:
    """Whether a process lives (None when it ran on another host, where this one cannot look)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except (OverflowError, ValueError):
        return False
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hidden_cause(exc: BaseException) -> BaseException:
    """The OSError (a full disk) or KeyboardInterrupt that torch's zip writer hides: it raises a RuntimeError
    ('unexpected pos ...') on its way out of torch.save, with the real cause only as its context."""
    seen = exc
    while isinstance(seen, RuntimeError) and seen.__context__ is not None:
        seen = seen.__context__
        if isinstance(seen, OSError | KeyboardInterrupt):
            return seen
    return exc


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary file in the same folder, fsync it, then rename it into place:
    a crash or a full disk leaves the previous file intact. write(f) gets the temporary file, open for
    writing and reading back. An OSError names path (never the temporary file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{writer_id()}")
    try:
        with open(tmp, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a read-only or full disk must not hide the error that got us here
            tmp.unlink(missing_ok=True)
        cause = _hidden_cause(exc)
        if isinstance(cause, OSError) and (cause.filename is None or cause.filename == str(tmp)):
            cause.filename = str(path)
        if cause is exc:
            raise
        raise cause.with_traceback(cause.__traceback__) from None
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files (see atomic_write) in folder whose writer is a process of this host that is gone
    (killed midway); returns how many. Those of live processes and of other hosts stay."""
    removed = 0
    try:
        names = [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp-" in p.name]
    except OSError:
        return 0
    for path in names:
        host, _, pid = path.name.rsplit(".tmp-", 1)[1].rpartition("-")
        if pid.isdigit() and process_alive(int(pid), host) is False:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


# -- files written for a user ------------------------------------------------------------------------------


def output_stamp(kind: str) -> str:
    """The stamp that marks a file as charrnn's own output, to put in its first bytes (a comment in HTML, the
    doc_string of an ONNX model): e.g. 'charrnn-output: inspect page'."""
    return f"{OUTPUT_STAMP} {kind}"


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(STAMP_WINDOW)
    except OSError:
        return b""


# Pages of `charrnn inspect` from before the stamp are recognised by their title.
_OLD_STAMPS = (b"<title>charrnn inspect: ",)


def written_by_charrnn(path: str | Path) -> bool:
    """Whether a regular file carries charrnn's output stamp in its first bytes."""
    head = _head(Path(path))
    return any(stamp in head for stamp in (OUTPUT_STAMP.encode(), *_OLD_STAMPS))


def _is_torch_file(head: bytes) -> bool:
    """A checkpoint, or any file torch.save wrote: a zip archive whose first member is <name>/data.pkl."""
    return head.startswith(b"PK\x03\x04") and b"/data.pkl" in head[30:300]


def _kind(path: Path) -> str | None:
    """What a path that is not a regular file is ('a folder', 'a pipe', ...), following links; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (such as a process substitution)"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def _run_folder_of(path: Path) -> Path | None:
    """The run folder a file lies in (directly, or in its checkpoints/), if any."""
    for folder in (path.parent, path.parent.parent if path.parent.name == "checkpoints" else None):
        if folder is not None and ((folder / RUN_MARKER).is_file() or all(
                (folder / name).exists() for name in ("config.yaml", "vocab.json", "checkpoints"))):
            return folder
    return None


def _kept(path: Path, keep: Sequence[tuple[str | Path, str]]) -> str | None:
    """What path is, when it is (or lies in a folder that is) one of the files the command reads."""
    target = Path(os.path.abspath(path))
    for kept, what in keep:
        kept = Path(kept)
        try:
            if kept.is_dir() and target.resolve().is_relative_to(kept.resolve()):
                return f"inside {what} ({kept}): a file written there would join it"
            if target.exists() and kept.exists() and os.path.samefile(target, kept):
                return what
        except OSError:
            continue
    return None


def check_user_output(path: str | Path, *, overwrite: bool = False, flag: str = "--out", example: str = "page.html",
                      keep: Sequence[tuple[str | Path, str]] = ()) -> Path:
    """The path a user named for a file charrnn writes for them, checked against the rule in this module's
    docstring; every refusal is a one-line UserError that names the user's path and the way out. keep: (path,
    description) of the files the command reads (never replaced, and a folder among them is never written into)."""
    if str(path) == "":
        raise UserError(f"{flag} is empty; name the file to write, e.g. {flag} {example}")
    path = Path(path)
    kind = _kind(path)
    if kind == "a folder":
        raise UserError(f"{flag} {path} is a folder; name a file in it, e.g. {flag} {path / example}")
    if kind is not None:
        raise UserError(f"{flag} {path} is {kind}, not a regular file: charrnn writes a file it can replace "
                        f"atomically; name a file, e.g. {flag} {example}")
    if path.is_symlink():
        raise UserError(f"{flag} {path} is a symbolic link (to {os.readlink(path)}); charrnn neither replaces a "
                        f"link nor writes through one: name the file itself, or another {flag}")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write {flag} {path}: {parent} is not a folder; pick another {flag}")
    if not parent.is_dir():
        raise UserError(f"cannot write {flag} {path}: the folder {parent} does not exist; create it or pick "
                        f"another {flag}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {flag} {path}: the folder {parent} is not writable; pick another {flag}")
    what = _kept(path, keep)
    if what is not None:
        raise UserError(f"{flag} {path} is {what}; charrnn never replaces it: pick another {flag}")
    if not path.exists():
        return path
    if _is_torch_file(_head(path)):
        raise UserError(f"{flag} {path} is a checkpoint (a PyTorch file); charrnn never replaces one, --overwrite "
                        f"or not: pick another {flag}")
    if written_by_charrnn(path):
        return path
    run = _run_folder_of(path)
    if run is not None:
        raise UserError(f"{flag} {path} is a file of the run folder {run}; charrnn never replaces a run's files, "
                        f"--overwrite or not: pick another {flag}")
    if not overwrite:
        raise UserError(f"{flag} {path} exists and was not written by charrnn; pass --overwrite to replace it, or "
                        f"pick another {flag}")
    return path


def write_user_file(path: str | Path, content: bytes | Callable[[BinaryIO], object], *, overwrite: bool = False,
                    flag: str = "--out", example: str = "page.html",
                    keep: Sequence[tuple[str | Path, str]] = ()) -> Path:
    """Check path (check_user_output), then write content (bytes that carry output_stamp() in their first
    STAMP_WINDOW bytes, or a function that writes such a file) atomically. A full disk is a TrainingFailed (exit 1)
    and any other failure to write a UserError, each one line naming path; what was there stays as it was."""
    path = check_user_output(path, overwrite=overwrite, flag=flag, example=example, keep=keep)
    if isinstance(content, bytes | bytearray):
        if OUTPUT_STAMP.encode() not in content[:STAMP_WINDOW]:
            raise ValueError(f"a file written for a user must carry {OUTPUT_STAMP!r} in its first bytes")
        data = content
        content = lambda f: f.write(data)  # noqa: E731
    try:
        atomic_write(path, content)
    except OSError as exc:
        kept = "nothing was replaced" if path.exists() else "nothing was written"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise TrainingFailed(f"could not write {path} ({exc.strerror}); {kept}: free some space and try again"
                                 ) from None
        raise UserError(f"cannot write {flag} {path} ({exc.strerror or exc}); {kept}: pick another {flag}") from None
    return path
