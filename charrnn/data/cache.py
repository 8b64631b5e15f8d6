"""The encoded-corpus cache: a corpus is encoded once into <cache>/<label>.<key>/ (ids.bin + meta.json),
reused while its files are unchanged, and memory-mapped, so a corpus larger than RAM works."""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.data.encode import Progress, encode_files, id_dtype
from charrnn.data.files import CorpusFiles, list_corpus_files
from charrnn.data.fingerprint import fingerprint_files
from charrnn.data.text import CHUNK_BYTES
from charrnn.errors import TrainingFailed, UserError
from charrnn.safe_files import atomic_write, remove_stale_temporaries
from charrnn.vocab import Vocab

_CACHE_FORMAT = 4  # 4 adds each file's length and fingerprint ("sources")


class CacheNotWritten(Exception):
    """The encoded corpus could not be written into the cache: a read-only folder (CacheReadOnly, exit 2) or a full
    disk (CacheFull, exit 1). A read-only command then encodes it without a cache."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # e.g. "Read-only file system"


class CacheReadOnly(CacheNotWritten, UserError):
    pass


class CacheFull(CacheNotWritten, TrainingFailed):
    pass


@dataclass
class EncodedCorpus:
    """A corpus encoded to ids (memory-mapped) with the vocabulary that encodes it."""

    ids: np.ndarray
    vocab: Vocab
    entry: Path  # the cache folder that holds the id file (other indexes of the corpus go beside it)
    files: int = 1
    skipped: list[str] = field(default_factory=list)  # files of a folder left out: not UTF-8 text
    sources: list[dict] = field(default_factory=list)  # per file read: path, bytes, xxh3 (data/fingerprint.py)

    def record(self) -> dict:
        """What a run remembers of its corpus (saved in its checkpoints): each file's path, length and
        fingerprint, and the characters of the whole text."""
        return {"chars": len(self.ids), "files": self.sources}
    notes: list[str] = field(default_factory=list)  # how the files were listed: links followed, read once, ...

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
                             int(meta.get("files", 1)), list(meta.get("skipped", [])), list(meta["sources"]))
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
    if progress is not None:  # the bar names the corpus: "encode tinyshakespeare.txt"
        progress = functools.partial(_labelled, progress, files.label)
    separator = separator if len(files) > 1 else ""
    _remove_stale_entries(Path(cache_dir))
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
        left_out = set(skipped)
        sources = fingerprint_files([p for p, name in zip(files.paths, files.names, strict=True)
                                     if name not in left_out])
        meta = {"chars": vocab.chars, "length": length, "source": [str(p) for p in files.paths[:1]],
                "files": len(files) - len(skipped), "skipped": skipped, "sources": sources,
                "paths": list(files.paths), "stamps": list(files.stamps)}
        atomic_write(entry / "meta.json", lambda f: f.write(json.dumps(meta).encode("utf-8")))
        _remove_superseded(entry, files)
    except OSError as exc:
        _remove_empty(entry, created)
        raise _not_written(exc, entry) from None
    except BaseException:
        _remove_empty(entry, created)
        raise
    return EncodedCorpus(_open_ids(entry / "ids.bin", vocab, length), vocab, entry, len(files) - len(skipped),
                         skipped, sources)


def _not_written(exc: OSError, entry: Path) -> CacheNotWritten:
    """The one-line error for a cache entry that could not be written, naming the file."""
    where = exc.filename or entry
    # numpy's tofile reports a short write ("9600 requested and 0 written") without an errno: a full disk
    said = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or (exc.errno is None and "written" in said)
    if full:
        return CacheFull(f"could not write the encoded corpus cache {where} (no space left on device); free some "
                         "space, or set data.cache to a folder on another disk", "no space left on device")
    return CacheReadOnly(f"cannot write the encoded corpus cache {where} ({said}); set data.cache to a writable "
                         "folder", said)


def _remove_superseded(entry: Path, files: CorpusFiles) -> None:
    """Entries of the same files from before they changed (the same paths, other stamps): nothing can use them
    again, and each is a full copy of the corpus. A process that still maps one keeps reading it (POSIX)."""
    for other in entry.parent.glob(f"{glob.escape(files.label)}.*"):
        if other == entry or not other.is_dir():
            continue
        try:
            meta = json.loads((other / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written, or not an entry: left alone
        if isinstance(meta, dict) and meta.get("paths") == list(files.paths) and \
                meta.get("stamps") != list(files.stamps):
            shutil.rmtree(other, ignore_errors=True)


def _remove_stale_entries(cache_dir: Path) -> None:
    """Temporaries of encodings that were killed midway (their process is gone; an id file can be gigabytes),
    and the entry folders they leave empty."""
    try:
        entries = [p for p in cache_dir.iterdir() if p.is_dir()]
    except OSError:
        return
    for entry in entries:
        if remove_stale_temporaries(entry):
            with contextlib.suppress(OSError):
                entry.rmdir()  # only if nothing else is left in it


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


def _labelled(progress: Progress, label: str, stage: str, done: int, total: int) -> None:
    progress(f"{stage} {label}", done, total)
