"""Which files make a corpus: the files and folders of data.path, a folder's files in a fixed shuffled order
(by a hash of each relative path) and filtered by data.include / data.exclude globs."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.data.text import _check_readable, check_corpus_path
from charrnn.errors import UserError
from charrnn.paths import user_path


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
    notes: list[str] = field(default_factory=list)  # links met in a folder: followed out of it, read once, ...

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


def _walk(folder: str) -> tuple[list[tuple[tuple[str, ...], str]], list[str]]:
    """Every file below folder (hidden names, such as .git, left out), as (relative path parts, path) in
    shuffled_order, and the links to folders found on the way (relative paths), which are not followed."""
    found, folder_links = [], []
    skip = len(folder.rstrip(os.sep)) + 1
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = tuple(root[skip:].split(os.sep)) if len(root) >= skip else ()
        folder_links += ["/".join((*rel, d)) for d in dirs if os.path.islink(os.path.join(root, d))]
        found.extend(((*rel, name), os.path.join(root, name)) for name in files if not name.startswith("."))
    found.sort(key=lambda item: shuffled_order("/".join(item[0])))
    return found, sorted(folder_links)


def shuffled_order(relative_path: str) -> tuple[str, str]:
    """The sort key of a folder's file: a hash of its relative path, so the validation split (the tail of the
    joined text) is a sample of the folder's files, not its alphabetically last ones (a test/ or zzz/ folder of
    another kind of text); the same on every machine and run, and a new file does not reorder the others."""
    return hashlib.sha1(relative_path.encode("utf-8", "surrogateescape")).hexdigest(), relative_path


def _stamp(st: os.stat_result) -> str:
    """What the cache key holds of a file: a rewrite cannot keep the change time (ctime) even when it restores
    the size and mtime, as `touch -d` does (git's index relies on the same stat fields)."""
    return f"{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _globs(patterns: str | Sequence[str] | None, key: str) -> tuple[list[str], list[re.Pattern]]:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    if any(not p for p in patterns):
        raise UserError(f"data.{key} holds an empty glob; use e.g. '**/*.txt', or leave it out")
    return patterns, [glob_regex(p) for p in patterns]


@dataclass
class _Listing:
    """The files found so far, each once: keyed by (device, inode), so a file reached through a link and its
    target, or through two links, is one entry."""

    entries: dict = field(default_factory=dict)  # (dev, ino) -> _Entry
    read_once: list[str] = field(default_factory=list)  # names left out as another name of a file already listed
    folder_links: list[str] = field(default_factory=list)

    def add(self, entry: _Entry) -> None:
        key = entry.key
        kept = self.entries.get(key)
        if kept is None:
            self.entries[key] = entry
        elif kept.link and kept.lenient and not entry.link and entry.lenient:
            # a folder's own file is read at its own place, not at the place of a link to it
            del self.entries[key]
            self.entries[key] = entry
            self.read_once.append(f"{kept.name} (a link to {entry.name})")
        elif entry.name != kept.name:  # (one path given twice is no news)
            self.read_once.append(f"{entry.name} ({'a link to ' if entry.link else 'the same file as '}{kept.name})")


@dataclass(frozen=True)
class _Entry:
    path: str
    name: str
    lenient: bool
    st: os.stat_result
    link: bool = False
    outside: str | None = None  # where a link that leaves its folder leads

    @property
    def key(self) -> tuple[int, int]:
        return self.st.st_dev, self.st.st_ino


def list_corpus_files(paths: str | Path | Sequence[str | Path], include: str | Sequence[str] | None = None,
                      exclude: str | Sequence[str] | None = None) -> CorpusFiles:
    """The files that paths (files and folders) stand for, in order: a folder is read recursively in sorted
    path order, keeping the regular files that match one of the include globs (default: every file) and none
    of the exclude globs, and have any bytes. Each file is read once, however many names lead to it: links to
    files are followed (those that leave their folder are named in a note), links to folders are not
    (docs/paths.md)."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    if not given:
        raise UserError("no training text: set data.path in the config or pass --data FILE")
    globs = _globs(include, "include"), _globs(exclude, "exclude")
    listing = _Listing()
    for item in given:
        path = user_path(item)
        check_corpus_path(path)
        path = path.resolve()
        if path.is_dir():
            _list_folder(listing, path, str(item), *globs)
        else:
            _check_readable(path)
            listing.add(_Entry(str(path), str(item), False, path.stat()))
    if not listing.entries:
        raise UserError(f"data folder {given[0]} holds only empty files; give it some text to learn from")
    label = user_path(given[0]).resolve().name or "corpus"
    if len(given) > 1:
        label += f"+{len(given) - 1}"
    kept = list(listing.entries.values())
    return CorpusFiles([e.path for e in kept], [e.name for e in kept], [e.lenient for e in kept],
                       [e.st.st_size for e in kept], [_stamp(e.st) for e in kept], label[:80],
                       _link_notes(listing, kept))


def _list_folder(listing: _Listing, folder: Path, item: str, include: tuple, exclude: tuple) -> None:
    """Add the files of one folder that the globs keep; a folder with none matched is a UserError."""
    (patterns, regexes), (excluded, not_regexes) = include, exclude
    found, folder_links = _walk(str(folder))
    listing.folder_links += folder_links
    matched = 0
    for parts, file in found:
        rel = "/".join(parts)
        if regexes and not any(r.match(rel) for r in regexes) or any(r.match(rel) for r in not_regexes):
            continue
        matched += 1
        try:
            st = os.stat(file)
        except OSError:
            continue  # a dangling link
        if not (st.st_size and stat.S_ISREG(st.st_mode)):  # no pipes: they would block
            continue
        link = os.path.islink(file)
        target = os.path.realpath(file) if link else file
        outside = target if link and not target.startswith(str(folder) + os.sep) else None
        listing.add(_Entry(file, rel, True, st, link, outside))
    if not matched:
        what = f"no file matching data.include {' or '.join(map(repr, patterns))}" if patterns else "no files"
        what += f" outside data.exclude {' or '.join(map(repr, excluded))}" if excluded else ""
        raise UserError(f"data folder {item} holds {what}; check the path"
                        + (" and the glob (e.g. '**/*.txt' for every .txt file below it)" if patterns else ""))


def _link_notes(listing: _Listing, kept: list[_Entry]) -> list[str]:
    """One line for each kind of link the listing met: followed out of the folder, read once, not followed."""
    notes = []
    outside = [f"{e.name} -> {e.outside}" for e in kept if e.outside]
    if outside:
        notes.append(f"note: followed {_count(outside, 'link')} out of the data folder: {_names(outside)}")
    if listing.read_once:
        notes.append(f"note: read once {_count(listing.read_once, 'file')} reached by two names: "
                     f"{_names(listing.read_once)}")
    if listing.folder_links:
        notes.append(f"note: left out {_count(listing.folder_links, 'link')} to a folder (links to folders are not "
                     f"followed; name the folder in data.path to read it): {_names(listing.folder_links)}")
    return notes


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _names(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
