"""Corpus -> integer ids, splits and batch iterators.

A corpus is read in chunks and encoded once into a compact id file (uint8 when the
vocabulary fits, else uint16/uint32) that is memory-mapped for training and eval, so a
corpus larger than RAM works. Batches are assembled with one vectorised gather.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from charrnn.errors import UserError
from charrnn.vocab import Vocab, codepoints, describe_char

# 2 MiB per read: large enough that per-chunk overhead vanishes, small enough that the chunk's temporaries
# (up to 4 bytes per character) are reused by malloc rather than page-faulted in afresh: measured 220 MB/s
# against 100 MB/s with 16 MiB chunks.
CHUNK_BYTES = 1 << 21
_MAX_CODEPOINT = 0x110000
_CACHE_FORMAT = 3

Progress = Callable[[str, int, int], None]  # progress(stage, bytes_done, bytes_total)


_BOM = b"\xef\xbb\xbf"


class NotUtf8(UserError):
    """A file that is not UTF-8 text (the message gives the byte offset)."""


def _not_regular(path: Path) -> str | None:
    """What a path that exists is, when it is not a regular file or a folder (charrnn reads a corpus twice:
    once to encode it, and its size and times key the cache), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def check_corpus_path(path: Path) -> None:
    """A UserError unless path is a regular file or a folder; a pipe such as /dev/stdin is named as one."""
    kind = _not_regular(path)
    if kind is not None:
        raise UserError(f"data path {path} is {kind}, not a regular file: charrnn encodes the corpus once into a "
                        "cache keyed by the file, so it needs a file it can read again; save the text first "
                        "(e.g. ... > corpus.txt) and pass that file")
    if not path.exists():
        raise UserError(f"data file not found: {path} (pass an existing UTF-8 text file or folder with --data or "
                        "data.path)")


def _check_readable(path: Path) -> None:
    check_corpus_path(path)
    if not path.is_file():
        raise UserError(f"data path {path} is not a file; pass a UTF-8 text file")
    if path.stat().st_size == 0:
        raise UserError(f"data file {path} is empty; give it some text to learn from")


def iter_text_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, text): the text of the file's bytes [start, end), read about chunk_bytes at a time
    without splitting a character; a leading byte-order mark is skipped (as utf-8-sig does); invalid UTF-8
    is a NotUtf8 error that gives its byte offset."""
    path = Path(path)
    _check_readable(path)
    offset = 0  # file offset of buf[0]
    carry = b""  # the start of a character cut by the previous read
    with open(path, "rb") as f:
        if f.read(len(_BOM)) == _BOM:
            offset = len(_BOM)
        else:
            f.seek(0)
        while True:
            block = f.read(chunk_bytes)
            buf = carry + block
            if not buf:
                return
            try:
                text = buf.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as exc:
                cut = exc.reason == "unexpected end of data" and exc.start >= len(buf) - 3
                if cut and not block:
                    raise NotUtf8(f"data file {path} is not UTF-8 text: it ends inside a character at byte "
                                  f"offset {offset + exc.start}") from None
                if not cut:
                    raise NotUtf8(
                        f"data file {path} is not UTF-8 text: invalid byte 0x{buf[exc.start]:02x} at byte offset "
                        f"{offset + exc.start}; convert it to UTF-8 (e.g. iconv -t UTF-8)"
                    ) from None
                text, carry = buf[: exc.start].decode("utf-8"), buf[exc.start:]  # the cut character goes on
            end = offset + len(buf) - len(carry)
            if text:
                yield offset, end, text
            offset = end
            if not block:
                return


def read_text(path: str | Path) -> str:
    """Read a whole UTF-8 text file with the same checks as the chunked reader."""
    return "".join(text for _, _, text in iter_text_chunks(path))


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds every id of a vocabulary."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


# -- which files make a corpus ---------------------------------------------------------------------------


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


# -- encoding --------------------------------------------------------------------------------------------


class _VocabOutgrewDtype(Exception):
    """More distinct characters turned up than the id file's integer type can number."""


class _UnknownChar(Exception):
    """A character outside a given vocabulary, at index `at` of the text written."""

    def __init__(self, char: str, at: int):
        self.char, self.at = char, at


class _IdWriter:
    """Appends the ids of text to an open id file, numbering characters in first-seen order (or by a given
    vocabulary); a document can be taken back (rolled back) when it turns out not to be UTF-8."""

    def __init__(self, out, dtype: np.dtype, id_of: np.ndarray, seen: list[int], fixed: bool, chunk_bytes: int):
        self.out, self.dtype, self.id_of, self.seen, self.fixed = out, dtype, id_of, seen, fixed
        self.length = 0
        # Reused buffers: fresh arrays for every chunk cost more in page faults than the lookup itself.
        self._index = np.empty(chunk_bytes + 4, dtype=np.intp)  # code points as numpy's index type
        self._ids = np.empty(chunk_bytes + 4, dtype=np.int32)

    def write(self, text: str) -> None:
        n = len(text)
        if n > len(self._index):
            self._index, self._ids = np.empty(n, dtype=np.intp), np.empty(n, dtype=np.int32)
        cps = self._index[:n]
        np.copyto(cps, codepoints(text))  # (n,)
        ids = self.id_of.take(cps, mode="clip", out=self._ids[:n])  # cps < _MAX_CODEPOINT
        if ids.min() < 0:
            if self.fixed:
                at = int(np.argmin(ids >= 0))
                raise _UnknownChar(text[at], at)
            new = np.flatnonzero(np.bincount(cps[ids < 0], minlength=_MAX_CODEPOINT))
            self.id_of[new] = np.arange(len(self.seen), len(self.seen) + len(new), dtype=np.int32)
            self.seen.extend(new.tolist())
            if id_dtype(len(self.seen)).itemsize > self.dtype.itemsize:
                raise _VocabOutgrewDtype
            ids = self.id_of.take(cps, mode="clip", out=self._ids[:n])
        ids.astype(self.dtype).tofile(self.out)
        self.length += n

    def mark(self) -> tuple[int, int]:
        return self.length, len(self.seen)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget what was written since mark, the characters first seen there included."""
        self.length, n_seen = mark
        self.out.seek(self.length * self.dtype.itemsize)
        self.out.truncate()
        self.id_of[self.seen[n_seen:]] = -1
        del self.seen[n_seen:]


def _encode_documents(w: _IdWriter, files: CorpusFiles, separator: str, skipped: set[int],
                      progress: Progress | None, chunk_bytes: int) -> None:
    """Write every document's ids, separator between two of them. Small files from folders are read into one
    buffer and decoded together, so a folder of many files costs what one file of the same size does; only a
    block that is not UTF-8 is decoded file by file, to find the files to skip."""
    sep = separator.encode("utf-8")
    buf = bytearray(chunk_bytes + len(sep))
    view = memoryview(buf)
    block: list[tuple[int, int, int]] = []  # (file index, start, end) of each file's bytes in buf
    pos, done_bytes, started, lead = 0, 0, False, False  # lead: the block starts with a separator
    total = sum(files.sizes)

    def write(text: str, source: Callable[[int], str]) -> None:
        try:
            w.write(text)
        except _UnknownChar as exc:
            raise UserError(f"character {describe_char(exc.char)} in {source(exc.at)} is not in the model's "
                            f"vocabulary of {len(w.seen)} characters; use only characters from the training text"
                            ) from None

    def source_in(pieces: list[tuple[int, str]], lead: bool) -> Callable[[int], str]:
        def source(at: int) -> str:
            offset = len(separator) if lead else 0
            for index, text in pieces:
                if offset <= at < offset + len(text):
                    return files.names[index]
                offset += len(text) + len(separator)
            return "data.separator"
        return source

    def flush() -> None:
        nonlocal pos, started, lead
        if not block:
            return
        try:
            text = str(view[:pos], "utf-8")

            def source(at: int, lead: bool = lead) -> str:  # for an error message only: decodes file by file
                return source_in([(i, str(view[a:b], "utf-8")) for i, a, b in block], lead)(at)
        except UnicodeDecodeError:
            pieces = []
            for index, a, b in block:
                try:
                    pieces.append((index, str(view[a:b], "utf-8")))
                except UnicodeDecodeError:
                    skipped.add(index)
            lead = bool(pieces) and w.length > 0
            text = (separator if lead else "") + separator.join(t for _, t in pieces)
            source = source_in(pieces, lead)
        if text:
            write(text, source)
        started = w.length > 0
        block.clear()
        pos, lead = 0, False
        if progress:
            progress("encode", done_bytes, total)

    for index, path in enumerate(files.paths):
        size = files.sizes[index]
        if index in skipped:
            done_bytes += size
            continue
        if files.lenient[index] and size <= chunk_bytes:
            if pos + len(sep) * started + size > len(buf):
                flush()
            start = pos + len(sep) * started
            try:
                fd = os.open(path, os.O_RDONLY)  # no file object per file: a folder may hold thousands
                try:
                    end = start + os.readv(fd, [view[start : start + size]])
                finally:
                    os.close(fd)
            except OSError as exc:
                raise UserError(f"cannot read {path} ({exc.strerror or exc}); fix its permissions or leave it "
                                "out with data.include") from None
            if buf[start : start + len(_BOM)] == _BOM:
                end -= len(_BOM)
                buf[start:end] = buf[start + len(_BOM) : end + len(_BOM)]
            if end > start:
                if started:
                    buf[pos:start] = sep
                    lead = lead or pos == 0
                block.append((index, start, end))
                pos, started = end, True
            done_bytes += size
            continue
        flush()
        mark = w.mark()
        wrote = False
        try:
            if started and separator:
                write(separator, lambda at: "data.separator")
            for _, end, text in iter_text_chunks(path, chunk_bytes):
                write(text, lambda at, name=files.names[index]: name)
                wrote = True
                if progress:
                    progress("encode", done_bytes + end, total)
        except NotUtf8:
            if not files.lenient[index]:
                raise
            skipped.add(index)
            wrote = False
        if wrote:
            started = True
        else:
            w.rollback(mark)  # a file that was not UTF-8 after all, or held only a byte-order mark
        done_bytes += size
    flush()


def encode_files(files: CorpusFiles, out_path: str | Path, vocab: Vocab | None = None, separator: str = "\n",
                 progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[Vocab, int, list[str]]:
    """Encode a corpus's files into a raw id file in one pass over the text; returns (vocabulary, characters,
    names of the files skipped as not UTF-8).

    With vocab None the vocabulary is collected on the way: ids are numbered in first-seen order, then
    renumbered into the vocabulary's sorted order by a pass over the id file (smaller than the text).
    """
    out_path = Path(out_path)
    id_of = np.full(_MAX_CODEPOINT, -1, dtype=np.int32)  # code point -> id (-1: not seen yet)
    given: list[int] = [] if vocab is None else [ord(c) for c in vocab.chars]
    tmp = out_path.with_name(f".{out_path.name}.tmp-{_writer_id()}")
    skipped: set[int] = set()  # known when a pass starts again, so later passes skip them at once
    dtype = id_dtype(max(len(given), 1))
    try:
        while True:
            seen = list(given)  # code point of each id
            id_of[:] = -1
            id_of[seen] = np.arange(len(seen), dtype=np.int32)
            try:
                with open(tmp, "wb") as out:
                    writer = _IdWriter(out, dtype, id_of, seen, vocab is not None, chunk_bytes)
                    _encode_documents(writer, files, separator, skipped, progress, chunk_bytes)
                    length = writer.length
            except _VocabOutgrewDtype:
                dtype = id_dtype(len(seen))
                continue  # start again with a wider type
            if id_dtype(max(len(seen), 1)) == dtype:
                break
            # a skipped file took back the characters that had widened the type: start again, narrower
            dtype = id_dtype(max(len(seen), 1))
        if vocab is None:
            vocab = Vocab([chr(c) for c in sorted(seen)])
            _renumber(tmp, dtype, np.argsort(np.argsort(seen)).astype(dtype), progress, chunk_bytes)
        with open(tmp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return vocab, length, [files.names[i] for i in sorted(skipped)]


def encode_file(path: str | Path, out_path: str | Path, vocab: Vocab | None = None,
                progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[Vocab, int]:
    """Encode one text file into a raw id file; returns (vocabulary, characters)."""
    vocab, length, _ = encode_files(list_corpus_files(path), out_path, vocab, "", progress, chunk_bytes)
    return vocab, length


def _renumber(path: Path, dtype: np.dtype, new_id: np.ndarray, progress: Progress | None,
              chunk_bytes: int) -> None:
    """Map every id x in a raw id file to new_id[x], in place and a chunk at a time."""
    if (new_id == np.arange(len(new_id))).all():
        return
    total = path.stat().st_size
    chunk_bytes -= chunk_bytes % dtype.itemsize
    byte_table = new_id.tobytes().ljust(256, b"\0") if dtype.itemsize == 1 else None
    with open(path, "rb+") as f:
        done = 0
        while block := f.read(chunk_bytes):
            f.seek(done)
            if byte_table is not None:
                f.write(block.translate(byte_table))  # C speed, no index arrays
            else:
                f.write(new_id.take(np.frombuffer(block, dtype=dtype)).tobytes())
            done += len(block)
            if progress:
                progress("sort ids", done, total)


@dataclass
class EncodedCorpus:
    """A corpus encoded to ids (memory-mapped) with the vocabulary that encodes it."""

    ids: np.ndarray
    vocab: Vocab
    entry: Path  # the cache folder that holds the id file (other indexes of the corpus go beside it)
    files: int = 1
    skipped: list[str] = field(default_factory=list)  # files of a folder left out: not UTF-8 text

    def splits(self, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
        """train | val | test, in file order; with test_fraction 0 val is the last fraction of the file."""
        n = len(self.ids)
        n_val = int(round(n * val_fraction))
        n_test = int(round(n * test_fraction))
        n_train = n - n_val - n_test
        return {
            "train": self.ids[:n_train],
            "val": self.ids[n_train : n_train + n_val],
            "test": self.ids[n_train + n_val :],
        }


def _writer_id() -> str:
    """Names this process's temporary files: nodes of a torchrun job may share a cache folder (and a pid)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _cache_key(files: CorpusFiles, separator: str, vocab: Vocab | None) -> str:
    """What identifies the encoded text: each file's path and stat stamp (see _stamp), the separator, and the
    vocabulary it was encoded with (if one was given)."""
    h = hashlib.sha256(f"{_CACHE_FORMAT}|{separator!r}".encode())
    for path, stamp in zip(files.paths, files.stamps, strict=True):
        h.update(f"|{path}|{stamp}".encode())
    if vocab is not None:
        h.update(vocab.to_json().encode())
    return h.hexdigest()[:16]


def _open_cached(entry: Path) -> EncodedCorpus | None:
    """The corpus encoded in a cache entry, or None when there is none (or it is damaged)."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        vocab = Vocab(meta["chars"])
        return EncodedCorpus(_open_ids(entry / "ids.bin", vocab, meta["length"]), vocab, entry,
                             int(meta.get("files", 1)), list(meta.get("skipped", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_corpus(paths: str | Path | Sequence[str | Path] | CorpusFiles, cache_dir: str | Path,
                vocab: Vocab | None = None, progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES, *,
                include: str | Sequence[str] | None = None, exclude: str | Sequence[str] | None = None,
                separator: str = "\n") -> EncodedCorpus:
    """Encode a corpus (a text file, a folder, several, or their listing) once into cache_dir, reused while
    its files are unchanged, and memory-map it. Documents are joined with separator.

    With vocab None the vocabulary is built from the text; otherwise the text is encoded with it (reusing
    the corpus's own encoding when its vocabulary is the same, as on resume).
    progress(stage, bytes_done, bytes_total) is called as chunks are processed.
    """
    files = paths if isinstance(paths, CorpusFiles) else list_corpus_files(paths, include, exclude)
    separator = separator if len(files) > 1 else ""
    own_entry = Path(cache_dir) / f"{files.label}.{_cache_key(files, separator, None)}"
    cached = _open_cached(own_entry)
    if cached is not None and (vocab is None or cached.vocab == vocab):
        return cached
    entry = own_entry if vocab is None else Path(cache_dir) / f"{files.label}.{_cache_key(files, separator, vocab)}"
    if vocab is not None and (cached := _open_cached(entry)) is not None:
        return cached
    created = _missing_folders(entry)
    try:
        entry.mkdir(parents=True, exist_ok=True)
        vocab, length, skipped = encode_files(files, entry / "ids.bin", vocab, separator, progress, chunk_bytes)
        if length == 0:
            (entry / "ids.bin").unlink()
            what = "" if len(files) == 1 else f" (its {len(files) - len(skipped)} UTF-8 files)"
            raise UserError(f"the corpus {files.names[0] if len(files) == 1 else files.label}{what} holds no text"
                            + (f"; skipped {len(skipped)} files that are not UTF-8 text" if skipped else ""))
        meta_path = entry / "meta.json"
        tmp = meta_path.with_name(f".meta.json.tmp-{_writer_id()}")
        meta = {"chars": vocab.chars, "length": length, "source": [str(p) for p in files.paths[:1]],
                "files": len(files) - len(skipped), "skipped": skipped}
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, meta_path)
    except OSError as exc:
        _remove_empty(entry, created)
        raise UserError(f"cannot write the encoded corpus cache in {entry}: {exc.strerror}; "
                        "set data.cache to a writable folder") from None
    except BaseException:
        _remove_empty(entry, created)
        raise
    return EncodedCorpus(_open_ids(entry / "ids.bin", vocab, length), vocab, entry, len(files) - len(skipped),
                         skipped)


def _missing_folders(path: Path) -> list[Path]:
    """path and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(entry: Path, created: list[Path]) -> None:
    """After a failed encode: take back the cache folders it made (only while empty: another process may be
    writing into the same cache)."""
    for folder in [entry] if entry not in created else created:
        try:
            folder.rmdir()
        except OSError:
            return


def _open_ids(path: Path, vocab: Vocab, length: int) -> np.ndarray:
    dtype = id_dtype(len(vocab))
    if path.stat().st_size != length * dtype.itemsize:
        raise ValueError("id file size does not match its metadata")
    if length == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


class RandomWindows:
    """Batches of windows starting at uniformly random offsets: (inputs, targets), each (B, T) int64."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if len(ids) < seq_length + 1:
            raise UserError(
                f"the training text has {len(ids)} characters, too few for train.seq_length={seq_length}; "
                f"use a longer text or set train.seq_length to at most {max(1, len(ids) - 1)}"
            )
        self.ids, self.batch_size, self.seq_length = ids, batch_size, seq_length
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.rng = np.random.default_rng(seed)
        self._window = np.arange(seq_length + 1)

    stateful = False

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Every rank draws the same global offsets and keeps its own rows: the global batch is rank-independent.
        starts = self.rng.integers(0, len(self.ids) - self.seq_length, size=self.batch_size)[self.rows]
        chunk = torch.from_numpy(np.asarray(self.ids[starts[:, None] + self._window], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class ContiguousStreams:
    """Stateful truncated BPTT: the split is cut into B parallel streams read front to back, so consecutive
    batches continue each other (carry the hidden state) and every character is seen once per epoch."""

    stateful = True

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        stream_len = (len(ids) - 1) // batch_size
        if stream_len < seq_length:
            need = batch_size * seq_length + 1
            raise UserError(
                f"the training text has {len(ids)} characters; stateful batching with batch_size={batch_size} "
                f"and seq_length={seq_length} needs at least {need}; lower them or use train.batching: random"
            )
        self.ids, self.batch_size, self.seq_length = ids, batch_size, seq_length
        rows = np.arange(batch_size)[rank * batch_size // world_size : (rank + 1) * batch_size // world_size]
        self._starts = rows * stream_len
        self.batches_per_epoch = stream_len // seq_length
        self._window = np.arange(seq_length + 1)
        self.position = 0  # batches taken in the current epoch
        self.epoch = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position == self.batches_per_epoch:
            self.position, self.epoch = 0, self.epoch + 1
        index = self._starts[:, None] + self.position * self.seq_length + self._window
        self.position += 1
        chunk = torch.from_numpy(np.asarray(self.ids[index], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    @property
    def starts_new_epoch(self) -> bool:
        """True when the next batch begins the streams again (the carried hidden state must be reset)."""
        return self.position in (0, self.batches_per_epoch)

    def state_dict(self) -> dict:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])


def make_batcher(kind: str, ids: np.ndarray, batch_size: int, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> RandomWindows | ContiguousStreams:
    cls = ContiguousStreams if kind == "stateful" else RandomWindows
    return cls(ids, batch_size, seq_length, seed, rank, world_size)
