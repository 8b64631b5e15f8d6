"""Is a sample new, or copied from the training text?

For each sample: the longest stretch it shares with the training text (length, and where it starts in the
sample), and for a sample ended by a stop string (say one name a line) whether it is a whole record of the
training text, framed by that stop string on both sides ("in train") or not ("new"), as makemore labels names.

The index is a suffix array over the training split's ids: built once with numpy (prefix doubling), cached
beside the corpus's id file, then searched with a binary search per query (bytes compare in C), so 64
samples of a few hundred characters cost a fraction of a second on a 1 MB corpus.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from dataclasses import asdict, dataclass, field

import numpy as np

from charrnn.data.cache import EncodedCorpus
from charrnn.safe_files import atomic_write


def suffix_array(ids: np.ndarray) -> np.ndarray:
    """Start offsets of the suffixes of ids in sorted order (a suffix that ends sorts before its extensions)."""
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    x = np.asarray(ids, dtype=np.int64) + 1  # 0 stands for "past the end"
    bits = int(x.max()).bit_length()
    width = max(1, 62 // bits)  # characters packed into the first sort key
    key = np.zeros(n, dtype=np.int64)
    for j in range(min(width, n)):
        key[: n - j] |= x[j:] << (bits * (width - 1 - j))
    rank, sa, done = _ranks(key, n)
    k = width
    while not done:  # ranks now order suffixes by their first k characters; the next pass by 2k
        second = np.zeros(n, dtype=np.int64)
        if k < n:
            second[: n - k] = rank[k:] + 1
        rank, sa, done = _ranks(rank * (n + 1) + second, n)
        k *= 2
    return sa.astype(np.int32 if n < 2**31 else np.int64)


def _ranks(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(dense rank of each key, the order that sorts them, whether all keys differ)."""
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    np.cumsum(ordered[1:] != ordered[:-1], out=starts[1:])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = starts
    return rank, order, int(starts[-1]) == n - 1


@dataclass
class Novelty:
    """What one sample shares with the training text."""

    longest_shared: int  # characters in the longest stretch of the sample found in the training text
    shared_start: int  # where that stretch starts in the sample (prime included)
    shared_text: str
    in_train: bool | None  # for a sample ended by the stop string: is it a whole record of the training text
    empty: bool = field(default=False, compare=False)  # the stop string came first: no record to judge (in_train None)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "empty"}

    def describe(self) -> str:
        """One line for people: 'in train' / 'new' (or 'empty'), then the longest shared stretch."""
        verdict = "" if self.in_train is None else ("in train; " if self.in_train else "new; ")
        verdict = "empty: the stop string came first; " if self.empty else verdict
        shown = self.shared_text if len(self.shared_text) <= 60 else self.shared_text[:57] + "..."
        return (f"novelty: {verdict}longest stretch shared with the training text: {self.longest_shared} "
                f"character{'' if self.longest_shared == 1 else 's'} at {self.shared_start}: {shown!r}")


class NoveltyIndex:
    """A suffix array over a text of ids, searched with bytes compares (ids as big-endian integers, so byte
    order is id order)."""

    def __init__(self, ids: np.ndarray, sa: np.ndarray, whole_text: bool = True):
        self.width = ids.dtype.itemsize
        self.text = np.asarray(ids).astype(f">u{self.width}").tobytes()
        self.sa = memoryview(np.ascontiguousarray(sa))  # indexing gives Python ints, fast for bisect
        self.n = len(ids)
        self.whole_text = whole_text  # the text ends where the corpus does (a record may end there too)

    @classmethod
    def for_corpus(cls, corpus: EncodedCorpus, n_train: int) -> NoveltyIndex:
        """The index of the corpus's first n_train ids (its training split), read from beside the id file or
        built and saved there (a cache that cannot be written costs a rebuild next time, nothing else)."""
        ids = corpus.ids[:n_train]
        path = corpus.entry / f"suffixes-{n_train}.bin"
        dtype = np.dtype(np.int32 if n_train < 2**31 else np.int64)
        sa = None
        if path.is_file() and path.stat().st_size == n_train * dtype.itemsize:
            sa = np.fromfile(path, dtype=dtype)
        if sa is None:
            sa = suffix_array(ids)
            with contextlib.suppress(OSError):
                atomic_write(path, sa.tofile)
        return cls(ids, sa, whole_text=n_train == len(corpus.ids))

    def _bytes(self, ids) -> bytes:
        return np.asarray(ids).astype(f">u{self.width}").tobytes()

    def _find(self, query: bytes) -> int:
        """Index in the suffix array of the first suffix >= query (compared over len(query) bytes)."""
        w, text, size = self.width, self.text, len(query)
        return bisect_left(self.sa, query, key=lambda p: text[p * w : p * w + size])

    def occurs(self, query: bytes) -> bool:
        pos = self._find(query)
        if pos == self.n:
            return False
        start = self.sa[pos] * self.width
        return self.text[start : start + len(query)] == query

    def _longest_at(self, query: bytes) -> int:
        """Characters of the longest prefix of query found in the text."""
        pos = self._find(query)
        best = 0
        for neighbour in (pos - 1, pos):
            if 0 <= neighbour < self.n:
                start = self.sa[neighbour] * self.width
                best = max(best, _common_prefix(query, self.text[start : start + len(query)]))
        return best // self.width

    def longest_shared(self, ids) -> tuple[int, int]:
        """(length, start) of the longest stretch of ids that occurs in the text; the first such stretch."""
        s, w = self._bytes(ids), self.width
        best, best_start = 0, 0
        for i in range(len(ids)):
            if len(ids) - i <= best:
                break
            if self.occurs(s[i * w : (i + best + 1) * w]):  # only a longer stretch than the best so far counts
                best, best_start = self._longest_at(s[i * w :]), i
        return best, best_start

    def is_record(self, ids, stop_ids) -> bool:
        """Does ids occur in the text as a whole record: after a stop string (or at the start of the text) and
        before one (or at the end of the corpus)?"""
        record, stop = self._bytes(ids), self._bytes(stop_ids)
        if self.text.startswith(record + stop) or self.occurs(stop + record + stop):
            return True
        return self.whole_text and (self.text == record or self.text.endswith(stop + record))


def _common_prefix(a: bytes, b: bytes) -> int:
    """Bytes a and b share at their start (a binary search of C compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def novelty(index: NoveltyIndex, vocab, sample: str, stop: str | None, ended_by_stop: bool) -> Novelty:
    """What a sample (prime included) shares with the indexed training text."""
    ids = vocab.encode(sample)
    length, start = index.longest_shared(ids)
    in_train, empty = None, False
    if stop and ended_by_stop:
        record = sample[sample.rfind(stop) + len(stop) :] if stop in sample else sample  # after a stop in the prime
        empty = record == ""  # an empty record is no name, line or word of the training text, whatever it holds
        if not empty:
            in_train = all(c in vocab for c in stop) and index.is_record(vocab.encode(record), vocab.encode(stop))
    return Novelty(length, start, sample[start : start + length], in_train, empty)
