"""Text -> a raw file of integer ids, in one pass: characters numbered as first seen (or by a given
vocabulary), then renumbered into the vocabulary's sorted order."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charrnn.data.files import CorpusFiles
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


class _DocumentWriter:
    """Writes every document's ids, separator between two of them. Small files from folders are read into one
    buffer and decoded together, so a folder of many files costs what one file of the same size does; only a
    block that is not UTF-8 is decoded file by file, to find the files to skip."""

    def __init__(self, w: _IdWriter, files: CorpusFiles, separator: str, skipped: set[int],
                 progress: Progress | None, chunk_bytes: int):
        self.w, self.files, self.separator, self.skipped = w, files, separator, skipped
        self.progress, self.chunk_bytes = progress, chunk_bytes
        self.sep = separator.encode("utf-8")
        self.buf = bytearray(chunk_bytes + len(self.sep))
        self.view = memoryview(self.buf)
        self.block: list[tuple[int, int, int]] = []  # (file index, start, end) of each file's bytes in buf
        self.pos, self.done_bytes = 0, 0
        self.started = False  # some document was written: the next one needs a separator first
        self.lead = False  # the block in buf starts with a separator
        self.total = sum(files.sizes)

    def write_all(self) -> None:
        for index, path in enumerate(self.files.paths):
            size = self.files.sizes[index]
            if index not in self.skipped:
                if self.files.lenient[index] and size <= self.chunk_bytes:
                    self._buffer(index, path, size)
                else:
                    self._flush()
                    self._stream(index, path)
            self.done_bytes += size
        self._flush()

    def _buffer(self, index: int, path: str, size: int) -> None:
        """Read a small file into the buffer (after a separator), flushing the buffer first when it is full."""
        if self.pos + len(self.sep) * self.started + size > len(self.buf):
            self._flush()
        start = self.pos + len(self.sep) * self.started
        try:
            fd = os.open(path, os.O_RDONLY)  # no file object per file: a folder may hold thousands
            try:
                end = start + os.readv(fd, [self.view[start : start + size]])
            finally:
                os.close(fd)
        except OSError as exc:
            raise UserError(f"cannot read {path} ({exc.strerror or exc}); fix its permissions or leave it "
                            "out with data.include") from None
        if self.buf[start : start + len(_BOM)] == _BOM:
            end -= len(_BOM)
            self.buf[start:end] = self.buf[start + len(_BOM) : end + len(_BOM)]
        if end > start:
            if self.started:
                self.buf[self.pos : start] = self.sep
                self.lead = self.lead or self.pos == 0
            self.block.append((index, start, end))
            self.pos, self.started = end, True

    def _stream(self, index: int, path: str) -> None:
        """Write a large file (or one named by the user) a chunk at a time; a folder's file that turns out not
        to be UTF-8 is taken back and skipped."""
        mark = self.w.mark()
        wrote = False
        try:
            if self.started and self.separator:
                self._write(self.separator, lambda at: "data.separator")
            for _, end, text in iter_text_chunks(path, self.chunk_bytes):
                self._write(text, lambda at, name=self.files.names[index]: name)
                wrote = True
                if self.progress:
                    self.progress("encode", self.done_bytes + end, self.total)
        except NotUtf8:
            if not self.files.lenient[index]:
                raise
            self.skipped.add(index)
            wrote = False
        if wrote:
            self.started = True
        else:
            self.w.rollback(mark)  # a file that was not UTF-8 after all, or held only a byte-order mark

    def _flush(self) -> None:
        """Decode and write the buffered block of small files."""
        if not self.block:
            return
        view, block, lead = self.view, self.block, self.lead
        try:
            text = str(view[: self.pos], "utf-8")

            def source(at: int) -> str:  # for an error message only: decodes file by file
                return self._source_in([(i, str(view[a:b], "utf-8")) for i, a, b in block], lead)(at)
        except UnicodeDecodeError:
            pieces = []
            for index, a, b in block:
                try:
                    pieces.append((index, str(view[a:b], "utf-8")))
                except UnicodeDecodeError:
                    self.skipped.add(index)
            lead = bool(pieces) and self.w.length > 0
            text = (self.separator if lead else "") + self.separator.join(t for _, t in pieces)
            source = self._source_in(pieces, lead)
        if text:
            self._write(text, source)
        self.started = self.w.length > 0
        self.block = []
        self.pos, self.lead = 0, False
        if self.progress:
            self.progress("encode", self.done_bytes, self.total)

    def _write(self, text: str, source: Callable[[int], str]) -> None:
        try:
            self.w.write(text)
        except _UnknownChar as exc:
            raise UserError(f"character {describe_char(exc.char)} in {source(exc.at)} is not in the model's "
                            f"vocabulary of {len(self.w.seen)} characters; use only characters from the training "
                            "text") from None

    def _source_in(self, pieces: list[tuple[int, str]], lead: bool) -> Callable[[int], str]:
        """Which file (or the separator) character `at` of the joined pieces came from."""
        def source(at: int) -> str:
            offset = len(self.separator) if lead else 0
            for index, text in pieces:
                if offset <= at < offset + len(text):
                    return self.files.names[index]
                offset += len(text) + len(self.separator)
            return "data.separator"
        return source


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
                _DocumentWriter(writer, files, separator, skipped, progress, chunk_bytes).write_all()
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
