"""Building a training session: everything that can be wrong is checked before the run folder is touched, then
the corpus is encoded, the width probed (`hidden_size: auto`), the model, optimizer and batcher built, a
checkpoint restored (`--resume`) and the run folder prepared."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.config import Config
from charrnn.console import FileProgress
from charrnn.data.batches import make_batcher
from charrnn.data.cache import EncodedCorpus
from charrnn.data.corpus import corpus_notes, open_corpus, resolve_data_paths, training_splits
from charrnn.device import emulated_bf16_note, resolve_device, resolve_precision
from charrnn.errors import UserError
from charrnn.memory import check_training_fits
from charrnn.model import CharRNN, hidden_to
from charrnn.run.folder import RunPaths, check_run_dir, prepare_run_dir
from charrnn.training import autosize, finetune
from charrnn.training.distributed import DistContext, context
from charrnn.training.optimizer import total_steps_for
from charrnn.training.resume import restore, resume_checkpoint, resume_notes
from charrnn.training.run_config import run_inputs
from charrnn.training.state import TrainState
from charrnn.training.step import build_step
from charrnn.training.trainer import Trainer
from charrnn.training.validation import Validation, scored_text
from charrnn.vocab import Vocab


@dataclass
class _Corpus:
    """The run's text: its vocabulary and splits, and a fine-tuning source checkpoint (None otherwise)."""

    vocab: Vocab
    splits: dict
    source: dict | None
    record: dict  # per file: bytes and fingerprint, saved in every checkpoint


def setup_trainer(cfg: Config, *, root: Path, resume: bool, overwrite: bool, quiet: bool,
                  device: str | None) -> Trainer:
    """A Trainer ready to run the loop over the run folder root."""
    dist = context()
    cfg, saved = _checked_config(cfg, root, resume, overwrite, dist)
    dev = dist.device(resolve_device(device or cfg.train.device))
    precision = resolve_precision(cfg.train.precision, dev, cfg.model.cell)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    cfg, corpus = _corpus(cfg, saved, resume, quiet, dist)
    train_ids = corpus.splits["train"]
    # model.hidden_size: auto and friends: probe this machine now; the probe's seconds count inside the budget.
    auto = autosize.resolve_auto(cfg, train_ids, len(corpus.vocab), dev, precision, dist=dist,
                                 step_limit=total_steps_for(cfg, len(train_ids)),
                                 eval_chars=len(scored_text(corpus.splits)) - 1)
    cfg = auto.cfg
    validation = Validation(cfg, corpus.splits, dev, precision, dist)  # train.eval_every: auto resolved above
    check_training_fits(cfg, len(corpus.vocab), dev, dist.world_size)  # refuse what cannot fit, before building
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    batcher = make_batcher(cfg.train.batching, train_ids, cfg.train.batch_size, cfg.train.seq_length, cfg.seed,
                           dist.rank, dist.world_size)
    model = CharRNN(len(corpus.vocab), cfg.model).to(dev)
    if corpus.source is not None:
        source = corpus.source
        finetune.load_source_weights(model, source["model"], Vocab(source["vocab"]), corpus.vocab)
    step, step_notes = build_step(cfg, model, precision, dist)
    if dist.rank:
        torch.manual_seed(rank_seed(cfg.seed, dist.rank))  # each rank draws its own dropout masks
    state = TrainState(elapsed=auto.seconds)
    if saved:
        state = restore(saved, step, batcher, dev, dist, root)
        state.hidden = hidden_to(state.hidden, dev)
    state.corpus = corpus.record  # what the checkpoints say the run trained on
    paths = _prepared_folder(cfg, root, resume, overwrite, dist)
    notes = [note for note in (emulated_bf16_note(precision, dev, cfg.model.cell), auto.message) if note]
    notes += step_notes + resume_notes(saved, corpus.record)  # resumed from best.pt; the corpus changed
    return Trainer(cfg, dist=dist, paths=paths, precision=precision, vocab=corpus.vocab,
                   validation=validation, model=model, step=step,
                   predicted_chars_per_sec=auto.chars_per_sec,
                   batcher=batcher, state=state, total_steps=total_steps_for(cfg, len(train_ids)),
                   discard_on_failure=not resume, quiet=quiet, notes=notes)


def _checked_config(cfg: Config, root: Path, resume: bool, overwrite: bool,
                    dist: DistContext) -> tuple[Config, dict | None]:
    """The config with absolute data paths (and, on resume, the checkpoint's), after the checks that need no
    corpus: the batch splits over the ranks, the run folder may be used as asked."""
    if cfg.train.batch_size % dist.world_size:
        raise UserError(f"train.batch_size={cfg.train.batch_size} does not split evenly over {dist.world_size} "
                        "processes; use a multiple of the process count so every rank gets the same rows")
    cfg = resolve_data_paths(cfg)  # the run records absolute data paths and cache
    if resume:
        return resume_checkpoint(root, cfg)
    # a folder it may not use (or must not clear: it holds the corpus) is named before the slow set-up
    dist.main_decides(lambda: check_run_dir(root, overwrite=overwrite, keep=run_inputs(cfg)))
    return cfg, None


def _corpus(cfg: Config, saved: dict | None, resume: bool, quiet: bool, dist: DistContext) -> tuple[Config, _Corpus]:
    """The run's corpus, encoded once per node (the others map the same id file); fine-tuning takes the source's
    model section and extends its vocabulary with the corpus's new characters."""
    source = None
    if cfg.init_from and not resume:
        source_path, source = finetune.source_checkpoint(cfg.init_from)
        cfg = finetune.with_source_model(cfg, source_path, source)
    vocab = Vocab(saved["vocab"]) if saved else None
    corpus = dist.node_first(lambda: encode_corpus(cfg, vocab, quiet=quiet or not dist.is_main))
    if source is not None:
        vocab = finetune.extended_vocab(Vocab(source["vocab"]), corpus.vocab)
        if vocab != corpus.vocab:
            corpus = dist.node_first(lambda: encode_corpus(cfg, vocab, quiet=True))
    splits = training_splits(corpus, cfg)  # held-out fractions that leave too little are named
    return cfg, _Corpus(corpus.vocab, splits, source, corpus.record())


def _prepared_folder(cfg: Config, root: Path, resume: bool, overwrite: bool, dist: DistContext) -> RunPaths:
    if resume:
        return prepare_run_dir(root, resume=True)
    return prepare_run_dir(root, overwrite=overwrite, keep=run_inputs(cfg)) if dist.is_main else RunPaths(root)


def encode_corpus(cfg: Config, vocab: Vocab | None, quiet: bool) -> EncodedCorpus:
    """The config's corpus, with a progress bar while a large one is encoded and a note on the files of a folder
    skipped as not UTF-8 text (unless quiet)."""
    with FileProgress(enabled=not quiet) as progress:
        corpus = open_corpus(cfg, vocab, progress=progress)
    for note in [] if quiet else corpus_notes(corpus):  # files skipped as not text, links met in a folder
        print(note, file=sys.stderr, flush=True)
    return corpus


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank other than 0 (rank 0 keeps the run's stream, as a single process)."""
    return (seed * 1_000_003 + rank * 7_919) % (2**63)
