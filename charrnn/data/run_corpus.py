"""A trained run's corpus and its splits, read through the cache the run used (never one in the current
folder): what `eval`, `inspect` and `sample --novelty` score or compare with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charrnn.config import Config
from charrnn.data.cache import EncodedCorpus
from charrnn.data.corpus import data_paths, open_corpus, run_cache_dir
from charrnn.errors import UserError
from charrnn.vocab import Vocab


def open_run_corpus(run: Path, cfg: Config, vocab: Vocab, fix: str) -> EncodedCorpus:
    """The run's corpus, read through the cache the run used (never one in the current folder); a file of it
    that is gone is one line, ending with `fix`."""
    paths = data_paths(cfg)
    missing = [p for p in paths if not Path(p).exists()]
    if not paths or missing:
        raise UserError(f"the run's corpus {(missing or ['(none recorded)'])[0]!r} is not available; {fix}")
    return open_corpus(cfg, vocab, cache_dir=run_cache_dir(cfg, run))


TOO_SHORT = "scoring needs at least 2 characters (each is predicted from the ones before it)"


def run_split_ids(run: Path, cfg: Config, vocab: Vocab, split: str, alternative: str) -> tuple[np.ndarray, str]:
    """The ids of one split of the run's corpus (read through the cache the run used, never one in the current
    folder) and a description of it; `alternative` is the option to suggest when the corpus or the split is
    unavailable."""
    corpus = open_run_corpus(run, cfg, vocab, f"pass the text with {alternative}")
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
    return ids, f"{split} split of {where}"
