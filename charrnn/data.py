"""Corpus -> integer ids, splits and batch iterators.

A corpus is read in chunks and encoded once into a compact id file (uint8 when the
vocabulary fits, else uint16/uint32) that is memory-mapped for training and eval, so a
corpus larger than RAM works. Batches are assembled with one vectorised gather.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.errors import UserError
from charrnn.vocab import Vocab, codepoints

# 2 MiB per read: large enough that per-chunk overhead vanishes, small enough that the chunk's temporaries
# (up to 4 bytes per character) are reused by malloc rather than page-faulted in afresh: measured 220 MB/s
# against 100 MB/s with 16 MiB chunks.
CHUNK_BYTES = 1 << 21
_MAX_CODEPOINT = 0x110000
_CACHE_FORMAT = 2

Progress = Callable[[str, int, int], None]  # progress(stage, bytes_done, bytes_total)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UserError(f"data file not found: {path} (pass an existing UTF-8 text file with --data or data.path)")
    if not path.is_file():
        raise UserError(f"data path {path} is not a file; pass a UTF-8 text file")
    if path.stat().st_size == 0:
        raise UserError(f"data file {path} is empty; give it some text to learn from")


def iter_text_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, text): the text of the file's bytes [start, end), read about chunk_bytes at a time
    without splitting a character; invalid UTF-8 is a UserError that gives its byte offset."""
    path = Path(path)
    _check_readable(path)
    offset = 0  # file offset of buf[0]
    carry = b""  # the start of a character cut by the previous read
    with open(path, "rb") as f:
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
                    raise UserError(f"data file {path} is not UTF-8 text: it ends inside a character at byte "
                                    f"offset {offset + exc.start}") from None
                if not cut:
                    raise UserError(
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


class _VocabOutgrewDtype(Exception):
    """More distinct characters turned up than the id file's integer type can number."""


def encode_file(path: str | Path, out_path: str | Path, vocab: Vocab | None = None,
                progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[Vocab, int]:
    """Encode a text file into a raw id file in one pass over the text; returns (vocabulary, characters).

    With vocab None the vocabulary is collected on the way: ids are numbered in first-seen order, then
    renumbered into the vocabulary's sorted order by a pass over the id file (smaller than the text).
    """
    path, out_path = Path(path), Path(out_path)
    id_of = np.full(_MAX_CODEPOINT, -1, dtype=np.int32)  # code point -> id (-1: not seen yet)
    seen: list[int] = [] if vocab is None else [ord(c) for c in vocab.chars]  # code point of each id
    id_of[seen] = np.arange(len(seen), dtype=np.int32)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{_writer_id()}")
    total = path.stat().st_size
    # Reused buffers: fresh arrays for every chunk cost more in page faults than the lookup itself.
    index_buffer = np.empty(chunk_bytes + 4, dtype=np.intp)  # code points as numpy's index type
    ids_buffer = np.empty(chunk_bytes + 4, dtype=np.int32)
    try:
        while True:
            dtype = id_dtype(max(len(seen), 1))
            try:
                with open(tmp, "wb") as out:
                    length = 0
                    for _, end, text in iter_text_chunks(path, chunk_bytes):
                        cps = index_buffer[: len(text)]
                        np.copyto(cps, codepoints(text))  # (n,)
                        ids = id_of.take(cps, mode="clip", out=ids_buffer[: len(cps)])  # cps < _MAX_CODEPOINT
                        if ids.min() < 0:
                            if vocab is not None:
                                vocab.encode(text)  # raises the UserError that names the unknown character
                            new = np.flatnonzero(np.bincount(cps[ids < 0], minlength=_MAX_CODEPOINT))
                            id_of[new] = np.arange(len(seen), len(seen) + len(new), dtype=np.int32)
                            seen.extend(new.tolist())
                            if id_dtype(len(seen)) != dtype:
                                raise _VocabOutgrewDtype
                            ids = id_of.take(cps, mode="clip", out=ids_buffer[: len(cps)])
                        ids.astype(dtype).tofile(out)
                        length += len(ids)
                        if progress:
                            progress("encode", end, total)
                break
            except _VocabOutgrewDtype:
                continue  # start again with a wider type; the ids numbered so far are kept
        if vocab is None:
            vocab = Vocab([chr(c) for c in sorted(seen)])
            _renumber(tmp, dtype, np.argsort(np.argsort(seen)).astype(dtype), progress, chunk_bytes)
        with open(tmp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
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
    source: Path

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


def _cache_key(path: Path, vocab: Vocab | None) -> str:
    st = path.stat()
    h = hashlib.sha256()
    h.update(f"{_CACHE_FORMAT}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    if vocab is not None:
        h.update(vocab.to_json().encode())
    return h.hexdigest()[:16]


def _open_cached(entry: Path, source: Path) -> EncodedCorpus | None:
    """The corpus encoded in a cache entry, or None when there is none (or it is damaged)."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        vocab = Vocab(meta["chars"])
        return EncodedCorpus(_open_ids(entry / "ids.bin", vocab, meta["length"]), vocab, source)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_corpus(path: str | Path, cache_dir: str | Path, vocab: Vocab | None = None,
                progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> EncodedCorpus:
    """Encode a text file once into cache_dir (reused while the file is unchanged) and memory-map it.

    With vocab None the vocabulary is built from the file; otherwise the file is encoded with it (reusing
    the file's own encoding when its vocabulary is the same, as on resume).
    progress(stage, bytes_done, bytes_total) is called as chunks are processed.
    """
    path = Path(path)
    _check_readable(path)
    own_entry = Path(cache_dir) / f"{path.name}.{_cache_key(path, None)}"
    cached = _open_cached(own_entry, path)
    if cached is not None and (vocab is None or cached.vocab == vocab):
        return cached
    entry = own_entry if vocab is None else Path(cache_dir) / f"{path.name}.{_cache_key(path, vocab)}"
    if vocab is not None and (cached := _open_cached(entry, path)) is not None:
        return cached
    try:
        entry.mkdir(parents=True, exist_ok=True)
        vocab, length = encode_file(path, entry / "ids.bin", vocab, progress, chunk_bytes)
        meta_path = entry / "meta.json"
        tmp = meta_path.with_name(f".meta.json.tmp-{_writer_id()}")
        tmp.write_text(json.dumps({"chars": vocab.chars, "length": length, "source": str(path)}), encoding="utf-8")
        os.replace(tmp, meta_path)
    except OSError as exc:
        raise UserError(f"cannot write the encoded corpus cache in {entry}: {exc.strerror}; "
                        "set data.cache to a writable folder") from None
    return EncodedCorpus(_open_ids(entry / "ids.bin", vocab, length), vocab, path)


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
