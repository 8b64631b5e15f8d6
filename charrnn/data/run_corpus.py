"""A trained run's corpus and its splits: what `eval`, `inspect` and `sample --novelty` score or compare with.

Read-only commands write a cache only where the run keeps its own (while that folder exists: a moved run's old
folder tree is never made again) or in a folder the user names (`--cache DIR`); otherwise, and where the run's
cache cannot be written, the corpus is encoded into a temporary folder that is removed at once (the ids stay
mapped), which costs a rebuild next time and nothing else. The text read is compared with the one the run
recorded (data/fingerprint.py), and a change is said."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from charrnn.config import Config
from charrnn.data.cache import CacheNotWritten, EncodedCorpus
from charrnn.data.corpus import data_paths, open_corpus, run_cache_dir, run_folder
from charrnn.data.fingerprint import corpus_change
from charrnn.errors import UserError
from charrnn.vocab import Vocab


def read_cache_dir(cfg: Config, run: Path, cache: Path | None = None) -> Path | None:
    """Where a read-only command keeps encoded text: --cache DIR, else the run's own cache while it exists (where
    its config says, or beside the run folder, where a moved runs/ folder took its .cache along); None when there
    is none (encode without a cache)."""
    if cache is not None:
        return Path(cache).expanduser()
    for own in (run_cache_dir(cfg, run), run_folder(run).parent / ".cache"):
        if own.is_dir():
            return own
    return None


def through_cache(load: Callable[[Path], EncodedCorpus], cfg: Config, run: Path, cache: Path | None,
                  notes: list[str]) -> EncodedCorpus:
    """load(cache folder) through the folder read_cache_dir names; where there is none, or the run's own cannot
    be written, through a temporary folder (a note says so). A --cache DIR that cannot be written is an error."""
    folder = read_cache_dir(cfg, run, cache)
    if folder is not None:
        try:
            return load(folder)
        except CacheNotWritten as exc:
            if cache is not None:
                raise UserError(f"--cache {cache}: cannot write the encoded text there ({exc.reason}); pass a "
                                "writable folder") from None
            notes.append(f"note: the run's cache {folder} cannot be written ({exc.reason}); the text is encoded "
                         "without a cache: pass --cache DIR to keep it")
    else:
        notes.append(f"note: the run's cache {run_cache_dir(cfg, run)} does not exist (was the run moved?); the "
                     "text is encoded without a cache: pass --cache DIR to keep it")
    with tempfile.TemporaryDirectory(prefix="charrnn-cache-", ignore_cleanup_errors=True) as tmp:
        return load(Path(tmp))  # the ids stay memory-mapped after the folder is removed


def open_run_corpus(run: Path, cfg: Config, vocab: Vocab, fix: str, *, cache: Path | None = None,
                    notes: list[str] | None = None) -> EncodedCorpus:
    """The run's corpus, read through the run's cache or --cache (see through_cache); a file of it that is gone
    is one line, ending with `fix`."""
    paths = data_paths(cfg)
    missing = [p for p in paths if not Path(p).exists()]
    if not paths or missing:
        raise UserError(f"the run's corpus {(missing or ['(none recorded)'])[0]!r} is not available; {fix}")
    return through_cache(lambda folder: open_corpus(cfg, vocab, cache_dir=folder), cfg, run, cache,
                         notes if notes is not None else [])


def changed_corpus_note(recorded: dict | None, corpus: EncodedCorpus, meaning: str) -> str | None:
    """'warning: the run's corpus changed since it was trained: <what changed>. <meaning>', or None when it did
    not (or the checkpoint recorded nothing)."""
    change = corpus_change(recorded, corpus.record())
    return None if change is None else f"warning: the run's corpus changed since it was trained: {change}. {meaning}"


TOO_SHORT = "scoring needs at least 2 characters (each is predicted from the ones before it)"


def run_split_ids(run: Path, cfg: Config, vocab: Vocab, split: str, alternative: str, *, cache: Path | None = None,
                  notes: list[str] | None = None, recorded: dict | None = None) -> tuple[np.ndarray, str]:
    """The ids of one split of the run's corpus and a description of it; `alternative` is the option to suggest
    when the corpus or the split is unavailable. recorded: the corpus the run recorded; a change is a warning in
    notes, and the description says it."""
    notes = notes if notes is not None else []
    corpus = open_run_corpus(run, cfg, vocab, f"pass the text with {alternative}", cache=cache, notes=notes)
    ids = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)[split]
    where = ", ".join(data_paths(cfg))
    if len(ids) < 2:
        fraction = {"val": cfg.data.val_fraction, "test": cfg.data.test_fraction}.get(split)
        if fraction == 0:
            raise UserError(f"the {split} split of {where} is empty (data.{split}_fraction is 0); "
                            f"use --split train or {alternative}")
        share = f"data.{split}_fraction={fraction:g}" if fraction else "what val and test leave"
        raise UserError(f"the {split} split of {where} holds {len(ids)} character ({share} of "
                        f"{len(corpus.ids):,}); {TOO_SHORT}: use --split train or {alternative}")
    note = changed_corpus_note(recorded, corpus, f"The {split} split is now other text than the one the run was "
                               "scored on: these figures are not comparable with the run's own")
    if note is not None:
        notes.append(note)
        return ids, f"{split} split of {where} (changed since training)"
    return ids, f"{split} split of {where}"
