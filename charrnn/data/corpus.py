"""The config's corpus: where its files and its encoded-id cache are, opened with a progress bar and notes.

data.py knows files and caches; this module knows the config (data.path, data.include/exclude, data.separator,
data.cache, log.dir) and the run folder, so that training, `eval` and `sample --novelty` open the same
corpus the same way.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from charrnn.config import Config
from charrnn.data.cache import EncodedCorpus, load_corpus
from charrnn.data.encode import Progress
from charrnn.data.files import list_corpus_files
from charrnn.data.text import check_corpus_path
from charrnn.errors import UserError
from charrnn.paths import user_path
from charrnn.vocab import Vocab

_NAMES_IN_NOTE = 5


def data_paths(cfg: Config) -> list[str]:
    """data.path as a list (it may name one path or several)."""
    path = cfg.data.path
    return [] if path is None else [path] if isinstance(path, str) else list(path)


def default_cache_dir(cfg: Config) -> Path:
    """data.cache, else <log.dir>/.cache (~ expanded in either)."""
    return user_path(cfg.data.cache) if cfg.data.cache else user_path(cfg.log.dir) / ".cache"


def resolve_data_paths(cfg: Config) -> Config:
    """A copy of cfg whose data.path, data.cache and log.dir are absolute (~ expanded), so that the run's
    config.yaml names the same files, cache and runs folder from any folder: `eval` and `sample` then never
    write a cache where the user happens to stand. A pipe such as /dev/stdin is refused here, before resolving
    would turn it into /proc/.../pipe:[...]."""
    cfg = copy.deepcopy(cfg)
    paths = []
    for path in data_paths(cfg):
        given = user_path(path)
        if given.exists():  # a missing file is reported when the corpus is opened
            check_corpus_path(given)
        paths.append(str(given.resolve()))
    if paths:
        cfg.data.path = paths[0] if isinstance(cfg.data.path, str) else paths
    cfg.data.cache = str(default_cache_dir(cfg).resolve())
    cfg.log.dir = os.path.abspath(user_path(cfg.log.dir))  # links kept: hints show runs/x, not its target
    return cfg


def run_cache_dir(cfg: Config, run: Path) -> Path:
    """The cache a trained run's corpus is read through: the absolute data.cache its config records, else (a
    run made before charrnn recorded it) <the run folder's parent>/.cache, as the default log.dir gives."""
    if cfg.data.cache and Path(cfg.data.cache).is_absolute():
        return Path(cfg.data.cache)
    return run_folder(run).parent / ".cache"


def run_folder(run: Path) -> Path:
    """The run folder of RUN, a run folder or a checkpoint file (runs/NAME/checkpoints/best.pt)."""
    run = user_path(run).resolve()
    if run.is_dir():
        return run
    return run.parent.parent if run.parent.name == "checkpoints" else run.parent


def open_corpus(cfg: Config, vocab: Vocab | None = None, *, progress: Progress | None = None,
                cache_dir: Path | None = None) -> EncodedCorpus:
    """The config's corpus, encoded (once, cached) and memory-mapped; progress(what, bytes_done, bytes_total) is
    called as it is encoded. Files of a folder skipped as not UTF-8 text are in corpus.skipped (see skipped_note)."""
    paths = data_paths(cfg)
    if not paths:
        raise UserError("no training text: set data.path in the config or pass --data FILE")
    files = list_corpus_files(paths, cfg.data.include, cfg.data.exclude)
    corpus = load_corpus(files, cache_dir or default_cache_dir(cfg), vocab, progress, separator=cfg.data.separator)
    corpus.notes = files.notes
    return corpus


def corpus_notes(corpus: EncodedCorpus) -> list[str]:
    """The notes training prints about its corpus: files skipped as not UTF-8 text, links met in a folder."""
    return ([skipped_note(corpus.skipped)] if corpus.skipped else []) + corpus.notes


def training_splits(corpus: EncodedCorpus, cfg: Config) -> dict[str, np.ndarray]:
    """The corpus's train | val | test splits, refused in one line that names data.val_fraction and
    data.test_fraction when what they leave to train on is too short for one train.seq_length window."""
    splits = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)
    n_train, total = len(splits["train"]), len(corpus.ids)
    held_out = cfg.data.val_fraction + cfg.data.test_fraction
    if n_train < cfg.train.seq_length + 1 and held_out and total >= cfg.train.seq_length + 1:
        raise UserError(f"data.val_fraction={cfg.data.val_fraction:g} and data.test_fraction="
                        f"{cfg.data.test_fraction:g} hold out {total - n_train:,} of the corpus's {total:,} "
                        f"characters, leaving {n_train:,} to train on: too few for train.seq_length="
                        f"{cfg.train.seq_length}; lower data.val_fraction (or data.test_fraction)")
    return splits


def skipped_note(skipped: list[str]) -> str:
    """One line that counts the files left out of a folder and names the first few."""
    shown = sorted(skipped)  # in path order, whatever order the folder is read in
    names = ", ".join(shown[:_NAMES_IN_NOTE]) + (", ..." if len(skipped) > _NAMES_IN_NOTE else "")
    files = "file that is" if len(skipped) == 1 else "files that are"
    return f"note: skipped {len(skipped)} {files} not UTF-8 text: {names}"
