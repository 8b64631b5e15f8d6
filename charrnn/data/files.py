"""Which files make a corpus: the files and folders of data.path, a folder walked in sorted path order and
filtered by data.include / data.exclude globs."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from charrnn.data.text import _check_readable, check_corpus_path
from charrnn.errors import UserError


@dataclass(frozen=True)
class CorpusFiles:
    """The files of a corpus in reading order. Files found in a folder (`lenient`) are skipped when they are
    not UTF-8 text; a file named by the user is an error then."""

    paths: list[str]  # absolute (strings: a folder of many files needs no Path object per file)
    names: list[str]  # as the user knows them: relative to their folder, or as given
    lenient: list[bool]
    sizes: list[int]
    stamps: list[str]  # size, mtime, ctime and inode, as listed: what the cache key is made of
    label: str  # names the cache entry and the progress bar

    def __len__(self) -> int:
        return len(self.paths)


def glob_regex(pattern: str) -> re.Pattern:
    """A glob over paths relative to a folder, as a regex: `**` spans folders (zero or more), `*` and `?`
    stay within one name, `[abc]` is a set; so '**/*.py' matches 'a.py' and 'x/y/a.py', '*.py' only 'a.py'."""
    parts = pattern.removeprefix("./").split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:.*/)?")
            continue
        j, piece = 0, []
        while j < len(part):
            c = part[j]
            if c == "*":
                piece.append("[^/]*")
            elif c == "?":
                piece.append("[^/]")
            elif c == "[" and (close := part.find("]", j + 2)) > 0:
                body = part[j + 1 : close]
                body = "^" + body[1:] if body.startswith("!") else body
                piece.append("[" + body.replace("\\", "\\\\") + "]")
                j = close
            else:
                piece.append(re.escape(c))
            j += 1
        out.append("".join(piece) + ("" if last else "/"))
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:
        raise UserError(f"data.include {pattern!r} is not a valid glob ({exc}); e.g. '**/*.txt'") from None


def _walk(folder: str) -> list[tuple[tuple[str, ...], str]]:
    """Every file below folder (not following folder links; hidden names, such as .git, left out), as
    (relative path parts, path) in sorted path order."""
    found = []
    skip = len(folder.rstrip(os.sep)) + 1
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = tuple(root[skip:].split(os.sep)) if len(root) >= skip else ()
        found.extend(((*rel, name), os.path.join(root, name)) for name in files if not name.startswith("."))
    found.sort(key=lambda item: item[0])
    return found


def _stamp(st: os.stat_result) -> str:
    """What the cache key holds of a file: a rewrite cannot keep the change time (ctime) even when it restores
    the size and mtime, as `touch -d` does (git's index relies on the same stat fields)."""
    return f"{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _globs(patterns: str | Sequence[str] | None, key: str) -> tuple[list[str], list[re.Pattern]]:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    if any(not p for p in patterns):
        raise UserError(f"data.{key} holds an empty glob; use e.g. '**/*.txt', or leave it out")
    return patterns, [glob_regex(p) for p in patterns]


def list_corpus_files(paths: str | Path | Sequence[str | Path], include: str | Sequence[str] | None = None,
                      exclude: str | Sequence[str] | None = None) -> CorpusFiles:
    """The files that paths (files and folders) stand for, in order: a folder is read recursively in sorted
    path order, keeping the regular files that match one of the include globs (default: every file) and none
    of the exclude globs, and have any bytes."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    if not given:
        raise UserError("no training text: set data.path in the config or pass --data FILE")
    patterns, regexes = _globs(include, "include")
    excluded, not_regexes = _globs(exclude, "exclude")
    entries: dict[str, tuple[str, bool, int, str]] = {}  # path -> (name, lenient, size, stamp), each once
    for item in given:
        path = Path(item).expanduser()
        check_corpus_path(path)
        path = path.resolve()
        if path.is_dir():
            matched = 0
            for parts, file in _walk(str(path)):
                rel = "/".join(parts)
                if regexes and not any(r.match(rel) for r in regexes) or any(r.match(rel) for r in not_regexes):
                    continue
                matched += 1
                try:
                    st = os.stat(file)
                except OSError:
                    continue  # a dangling link
                if st.st_size and stat.S_ISREG(st.st_mode) and file not in entries:  # no pipes: they would block
                    entries[file] = (rel, True, st.st_size, _stamp(st))
            if not matched:
                what = f"no file matching data.include {' or '.join(map(repr, patterns))}" if patterns else "no files"
                what += f" outside data.exclude {' or '.join(map(repr, excluded))}" if excluded else ""
                raise UserError(f"data folder {item} holds {what}; check the path"
                                + (" and the glob (e.g. '**/*.txt' for every .txt file below it)" if patterns else ""))
        else:
            _check_readable(path)
            st = path.stat()
            entries.setdefault(str(path), (str(item), False, st.st_size, _stamp(st)))
    if not entries:
        raise UserError(f"data folder {given[0]} holds only empty files; give it some text to learn from")
    label = Path(given[0]).expanduser().resolve().name or "corpus"
    if len(given) > 1:
        label += f"+{len(given) - 1}"
    names, lenient, sizes, stamps = zip(*entries.values(), strict=True)
    return CorpusFiles(list(entries), list(names), list(lenient), list(sizes), list(stamps),
                       label[:80])
