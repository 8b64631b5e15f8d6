"""Resuming a run: its config and last.pt, checked against each other, and the state put back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from charrnn.config import Config, is_auto
from charrnn.data.corpus import resolve_data_paths
from charrnn.data.fingerprint import corpus_change
from charrnn.errors import UserError, shown
from charrnn.paths import shown_path
from charrnn.run import status as run_status
from charrnn.run.checkpoint import load_resume_checkpoint
from charrnn.run.folder import RunPaths, check_run_dir
from charrnn.training import autosize, distributed
from charrnn.training.averaging import restore_average
from charrnn.training.optimizer import step_limit_key
from charrnn.training.state import TrainState, set_rng_state
from charrnn.training.step import TrainingStep
from charrnn.training.validation import spent_rule


def resume_checkpoint(root: Path, cfg: Config) -> tuple[Config, dict]:
    """The config to resume with (an auto keeps what the run chose) and last.pt, checked against each other."""
    paths = check_run_dir(root, resume=True)  # last.pt exists and the folder can be written
    saved = load_resume_checkpoint(paths)  # a damaged last.pt: the error names an intact checkpoint
    cfg = autosize.keep_resolved(cfg, saved["config"])
    check_resumable(saved["config"], cfg)
    train = saved["config"].get("train") if isinstance(saved["config"], dict) else None
    if isinstance(train, dict) and "decay_vectors" not in train:  # a run from before train.decay_vectors: its
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, decay_vectors=True))  # one group
    return cfg, saved


def restore(saved: dict, step: TrainingStep, batcher, dev: torch.device, dist: distributed.DistContext,
            root: Path) -> TrainState:
    """Put a checkpoint's weights (and their moving average, train.ema), optimizer, scaler, data position and RNG
    into the step and the batcher; return its TrainState."""
    try:
        step.model.load_state_dict(saved.get("trained_model", saved["model"]))
        if step.average is not None:  # a checkpoint from before "average_model" holds the average as "model"
            restore_average(step.average, saved.get("average_model", saved["model"]), saved["step"])
            step.scores_average = saved.get("scored", "average") == "average"
        step.optimizer.load_state_dict(saved["optimizer"])
        state = TrainState.from_dict(saved)
        batcher.load_state_dict(state.data)
        rngs = state.rank_rngs
        if rngs is not None and len(rngs) == dist.world_size:
            set_rng_state(rngs[dist.rank], dev)
        elif dist.rank == 0:
            set_rng_state(state.rng, dev)
        if saved.get("scaler"):
            step.scaler.load_state_dict(saved["scaler"])
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
                    "train.seq_length", "train.optimizer", "train.ema")


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


# Settings that only locate the run (log.dir, name) or only matter when it starts (init_from): never "unused".
_LOCATING = ("name", "log.dir", "init_from")


def unused_settings_note(from_file: Config, run: Config, config_file: str | Path, run_dir: Path) -> str | None:
    """On --resume with --config: the file's settings that differ from the run's (both with the same --set
    applied) and so are not used, in one note with the --set that would apply them; None when none differ."""
    file_values, run_values = _flat(resolve_data_paths(from_file)), _flat(run)
    if from_file.init_from:  # a fine-tuned run's model is its source's, not the file's
        file_values = {k: v for k, v in file_values.items() if not k.startswith("model.")}
    if from_file.data.cache is None:  # the file names no cache: the run's default is no setting of the file's
        file_values.pop("data.cache")
    differ = [k for k, v in file_values.items() if k not in _LOCATING and k in run_values and v != run_values[k]
              and not is_auto(v)]
    if not differ:
        return None
    shown_keys = ", ".join(f"{k} ({shown(file_values[k])} in the file, {shown(run_values[k])} in the run"
                           f"{'; fixed for the run' if _fixed(k) else ''})" for k in differ)
    changeable = [k for k in differ if not _fixed(k)]
    example = f"{changeable[0]}={_yaml_value(file_values[changeable[0]])}" if changeable else ""
    hint = f"; to change one, pass it with --set, e.g. --set {example}" if changeable else ""
    return (f"note: --resume continues {shown_path(run_dir)} with its own settings "
            f"({shown_path(RunPaths(run_dir).config)}); these of {shown_path(config_file)} differ and are not used: "
            f"{shown_keys}{hint}")


def _flat(cfg: Config) -> dict:
    flat = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _fixed(key: str) -> bool:
    return key.startswith("model.") or key in _FIXED_ON_RESUME


def _yaml_value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def finished_reason(cfg: Config, state: TrainState, total_steps: int | None, root: Path,
                    dist: distributed.DistContext) -> str | None:
    """Why a resumed run has nothing left to do (max_steps, max_epochs, time_budget or early_stop), or None. Only
    a run recorded as finished at its checkpoint's step counts: one interrupted at its last step still ends its
    bookkeeping (final sample, embedding, status). All ranks agree (a collective)."""
    record = run_status.read(root) if dist.is_main else None
    reason = None
    if record and record.get("status") == "finished" and record.get("step") == state.step:
        t = cfg.train
        if total_steps is not None and state.step >= total_steps:
            reason = step_limit_key(cfg, total_steps)
        elif t.time_budget is not None and state.elapsed >= t.time_budget:
            reason = "time_budget"
        elif spent_rule(t, state):
            reason = "early_stop"
    return reason if dist.any_rank(reason is not None) else None


def finished_message(cfg: Config, step: int, reason: str, root: Path, stop_rule: str | None = None) -> str:
    """What --resume of a finished run says: that it is finished, and the --set that would train it on
    (stop_rule: under early_stop, the rule that stopped it, validation.spent_rule's)."""
    key = {"max_steps": "max_steps", "max_epochs": "max_epochs", "time_budget": "time_budget",
           "early_stop": stop_rule or "patience"}[reason]
    value = getattr(cfg.train, key)
    detail = {"patience": f": no better val loss in {value} evaluations",
              "patience_rises": f": the val loss rose at {value} evaluations in a row"}.get(key, "")
    why = f"train.{key}={value:g}{detail}"
    run = shown_path(root)
    return (f"{run} already finished at step {step} ({why}); nothing was changed. To train it further: "
            f"charrnn train --resume --run-dir {run} --set train.{key}={2 * value:g}")
