"""Writing files safely: every file charrnn writes goes through a temporary file in the same folder, fsync,
then a rename, so a crash or a full disk leaves the previous file intact."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def writer_id() -> str:
    """Names this process's temporary files: nodes of a torchrun job may share a folder (and a pid)."""
    return f"{socket.gethostname()}-{os.getpid()}"


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


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary file in the same folder, fsync it, then rename it into place:
    a crash or a full disk leaves the previous file intact. write(f) gets the temporary file, open for
    writing and reading back."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{writer_id()}")
    try:
        with open(tmp, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
