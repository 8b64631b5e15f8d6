"""How charrnn reads a path a user gave, and how it shows one back (docs/paths.md has the rules).

- `~` and `~user` are expanded wherever a path is read (a config key, a flag, a command's argument).
- A relative path in a config file that names what a run reads (data.path, init_from) is relative to the
  config file's folder; every other relative path (the flags, log.dir, data.cache) to the current folder.
- A path charrnn prints in a hint (`sample it: charrnn sample runs/x`) is one a shell takes as printed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path


def user_path(path: str | os.PathLike) -> Path:
    """path with a leading ~ or ~user expanded (left as is for an unknown user: Path.expanduser would raise)."""
    return Path(os.path.expanduser(os.fspath(path)))


def relative_to_folder(path: str, folder: Path) -> str:
    """A path written in a file that lives in folder: ~ expanded, and a relative one joined to folder."""
    given = user_path(path)
    return str(given if given.is_absolute() or not path else folder / given)


def shown_path(path: str | os.PathLike) -> str:
    """path as a hint prints it for a shell: an absolute path below the current folder relative to it (runs/x),
    any other as it is; quoted where a shell would split or expand it (spaces, ~, $)."""
    path = Path(path)
    if path.is_absolute():
        with contextlib.suppress(ValueError, OSError):  # not below it, or the current folder is gone
            path = path.relative_to(Path.cwd())
    return shlex.quote(str(path))
