"""Resuming a run: its config and last.pt, checked against each other, and the state put back."""

from __future__ import annotations

from pathlib import Path

import torch

from charrnn.config import Config
from charrnn.data.fingerprint import corpus_change
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_resume_checkpoint
from charrnn.run.folder import RunPaths, check_run_dir
from charrnn.training import autosize, distributed
from charrnn.training.state import TrainState, set_rng_state


def resume_checkpoint(root: Path, cfg: Config) -> tuple[Config, dict]:
    """The config to resume with (an auto keeps what the run chose) and last.pt, checked against each other."""
    paths = check_run_dir(root, resume=True)  # last.pt exists and the folder can be written
    saved = load_resume_checkpoint(paths)  # a damaged last.pt: the error names an intact checkpoint
    cfg = autosize.keep_resolved(cfg, saved["config"])
    check_resumable(saved["config"], cfg)
    return cfg, saved


def restore(saved: dict, model: CharRNN, optimizer, batcher, scaler, dev: torch.device,
             dist: distributed.DistContext, root: Path) -> TrainState:
    """Put a checkpoint's weights, optimizer, data position and RNG back; return its TrainState."""
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = TrainState.from_dict(saved)
        batcher.load_state_dict(state.data)
        rngs = state.rank_rngs
        if rngs is not None and len(rngs) == dist.world_size:
            set_rng_state(rngs[dist.rank], dev)
        elif dist.rank == 0:
            set_rng_state(state.rng, dev)
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        source = saved.get("resumed_from") or RunPaths(root).last
        raise UserError(f"cannot resume from {source}: it does not fit this run "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); start a new run") from None
    return state


def resume_notes(saved: dict | None, record: dict) -> list[str]:
    """What a resumed run says before it goes on: that it starts from best.pt (the run has no last.pt yet), and
    that its corpus changed since the checkpoint, and what that means."""
    if not saved:
        return []
    notes = []
    if Path(saved.get("resumed_from") or "last.pt").name == "best.pt":
        notes.append(f"note: the run has no last.pt (it stopped before writing one): resuming from best.pt, step "
                     f"{saved['step']}")
    change = corpus_change(saved.get("corpus"), record)
    if change:
        notes.append(f"warning: the corpus changed since the checkpoint: {change}. Training goes on with the text as "
                     f"it is now, whose val split is other text: val losses after step {saved['step']} are not "
                     "comparable with those before")
    return notes


# Settings that fix the model's shape, the optimizer's state or the order of the data: a resumed run keeps them.
_FIXED_ON_RESUME = ("model.*", "data.val_fraction", "data.test_fraction", "train.batching", "train.batch_size",
                    "train.seq_length", "train.optimizer")


def check_resumable(saved: dict, cfg: Config) -> None:
    """Refuse, before anything is written, a resume whose config changes a setting the checkpoint depends on."""
    now = cfg.to_dict()
    for key in _FIXED_ON_RESUME:
        section, name = key.split(".")
        before = saved.get(section) if isinstance(saved, dict) else None
        if not isinstance(before, dict):
            continue
        for n in now[section] if name == "*" else [name]:
            if n in before and before[n] != now[section][n]:
                raise UserError(f"cannot resume with {section}.{n}={now[section][n]!r}: the run was trained with "
                                f"{before[n]!r}, and its checkpoint depends on it; keep it, or start a new run")
