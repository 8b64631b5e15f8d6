"""Text -> a raw file of integer ids, in one pass: characters numbered as first seen (or by a given
vocabulary), then renumbered into the vocabulary's sorted order."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charrnn.data.files import CorpusFiles, list_corpus_files
from charrnn.data.text import _BOM, CHUNK_BYTES, NotUtf8, iter_text_chunks
from charrnn.errors import UserError
from charrnn.safe_files import atomic_write
from charrnn.vocab import Vocab, codepoints, describe_char

_MAX_CODEPOINT = 0x110000


Progress = Callable[[str, int, int], None]  # progress(stage, bytes_done, bytes_total)


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds every id of a vocabulary."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


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
    id_of = np.full(_MAX_CODEPOINT, -1, dtype=np.int32)  # code point -> id (-1: not seen yet)
    given: list[int] = [] if vocab is None else [ord(c) for c in vocab.chars]
    skipped: set[int] = set()  # known when a pass starts again, so later passes skip them at once
    result = {}

    def write(out: BinaryIO) -> None:
        dtype = id_dtype(max(len(given), 1))
        while True:
            seen = list(given)  # code point of each id
            id_of[:] = -1
            id_of[seen] = np.arange(len(seen), dtype=np.int32)
            out.seek(0)
            out.truncate()
            try:
                writer = _IdWriter(out, dtype, id_of, seen, vocab is not None, chunk_bytes)
                _encode_documents(writer, files, separator, skipped, progress, chunk_bytes)
            except _VocabOutgrewDtype:
                dtype = id_dtype(len(seen))
                continue  # start again with a wider type
            if id_dtype(max(len(seen), 1)) == dtype:
                break
            # a skipped file took back the characters that had widened the type: start again, narrower
            dtype = id_dtype(max(len(seen), 1))
        result["length"] = writer.length
        result["vocab"] = vocab
        if vocab is None:
            result["vocab"] = Vocab([chr(c) for c in sorted(seen)])
            _renumber(out, dtype, np.argsort(np.argsort(seen)).astype(dtype), progress, chunk_bytes)

    atomic_write(out_path, write)
    vocab, length = result["vocab"], result["length"]
    return vocab, length, [files.names[i] for i in sorted(skipped)]


def encode_file(path: str | Path, out_path: str | Path, vocab: Vocab | None = None,
                progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[Vocab, int]:
    """Encode one text file into a raw id file; returns (vocabulary, characters)."""
    vocab, length, _ = encode_files(list_corpus_files(path), out_path, vocab, "", progress, chunk_bytes)
    return vocab, length


def _renumber(f: BinaryIO, dtype: np.dtype, new_id: np.ndarray, progress: Progress | None,
              chunk_bytes: int) -> None:
    """Map every id x in an open raw id file to new_id[x], in place and a chunk at a time."""
    if (new_id == np.arange(len(new_id))).all():
        return
    f.flush()
    total = os.fstat(f.fileno()).st_size
    chunk_bytes -= chunk_bytes % dtype.itemsize
    byte_table = new_id.tobytes().ljust(256, b"\0") if dtype.itemsize == 1 else None
    f.seek(0)
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
