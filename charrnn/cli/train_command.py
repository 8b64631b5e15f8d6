"""`charrnn train`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charrnn.cli.typer_app import app, handles_errors, metrics_table, speaks_for_the_job
from charrnn.errors import UserError
from charrnn.paths import shown_path


@app.command()
@handles_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (configs/ihello.yaml).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set train.lr=0.01 "
                                                   "(repeatable).")] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Text file or folder to train on (sets data.path); repeat it for several. A folder is read "
        "recursively; pick its files with --set data.include='**/*.txt'.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name: the run folder is <log.dir>/NAME.")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run folder (instead of --name).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    init_from: Annotated[Path | None, typer.Option(
        "--init-from", help="Fine-tune: start a new run (step 0, fresh optimizer and schedule) from the weights of "
        "this run (its best.pt, else last.pt) or checkpoint file, with its model section; characters new in the "
        "corpus are added to the vocabulary.")] = None,
) -> None:
    """Train a model on a text file or folder; checkpoints, metrics and TensorBoard logs go into the run folder.

    Example: charrnn train --config configs/shakespeare.yaml

    Example: charrnn train --config configs/shakespeare.yaml --data src/ --set data.include='**/*.py'

    Example: charrnn train --config configs/shakespeare.yaml --data sonnets.txt --init-from runs/shakespeare
    --set train.patience=5 --name sonnets
    """
    from charrnn.training.loop import train as run_training
    from charrnn.training.resume import finished_message
    from charrnn.training.run_config import training_config

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")
    data_arg = data[0] if data and len(data) == 1 else data or None
    notes: list[str] = []
    cfg, run_dir = training_config(config, list(set_ or []), data=data_arg, name=name, run_dir=run_dir, resume=resume,
                                   init_from=init_from, notes=notes)
    out = Console(stderr=True, highlight=False, soft_wrap=True)
    for note in notes if speaks_for_the_job() else []:  # settings not used: said even under --quiet
        out.print(note, markup=False)
    result = run_training(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, quiet=quiet, device=device)
    if result.already_finished:
        if result.is_main:
            out.print(finished_message(cfg, result.step, result.stopped_by, result.run_dir, result.stop_rule),
                      markup=False)
        return
    if result.val is not None and not quiet and result.is_main:  # under torchrun, one summary
        _summary(out, cfg, result)


def _summary(out: Console, cfg, result) -> None:
    """The end of a run: the model `sample` and `eval` use (best.pt) first, then how the run ended: the last
    evaluation when it differs, the speed against the probe's prediction, and the command that samples it."""
    from charrnn.evaluate import Metrics

    best = next((r for r in result.history() if r.get("step") == result.best_step), None)
    metrics = result.val
    if best is not None and result.best_step != result.step:
        metrics = Metrics(best["val_loss"], best["val_bpc"], math.exp(min(best["val_loss"], 700.0)),
                          best["val_accuracy"], result.val.chars)
    title = f"{shown_path(result.run_dir)}: best.pt, step {result.best_step:,} of {result.step:,} " \
            f"({result.elapsed_s:.1f} s)"
    last = "the same" if metrics is result.val else f"{result.val.loss:.4f} (step {result.step:,})"
    out.print(metrics_table(title, metrics, "last evaluation", last))
    rise = result.val.loss - result.best_val_loss
    if rise > 0.02:
        out.print(f"note: the val loss rose by {rise:.2f} after its best at step {result.best_step:,}: the model began "
                  "to learn the training text by heart. sample and eval use best.pt; for this text, a shorter "
                  "train.time_budget or more model.dropout would do as well", markup=False)
    if result.stop_rule == "patience_rises":
        out.print(f"stopped by: early stop (the val loss rose at {cfg.train.patience_rises} evaluations in a row "
                  "after its best)", markup=False)
    elif result.stopped_by == "early_stop":
        by = f" by more than {cfg.train.patience_min_delta:g}" if cfg.train.patience_min_delta else ""
        out.print(f"stopped by: early stop ({cfg.train.patience} evaluations without a better val loss{by})",
                  markup=False)
    elif result.stopped_by == "max_epochs" and cfg.train.time_budget:  # before the budget: say which limit
        still = "; its val loss was still falling: a larger train.max_epochs may do better" \
            if result.best_step == result.step else ""
        out.print(f"stopped by: train.max_epochs ({cfg.train.max_epochs:g} passes over the training text), "
                  f"{result.elapsed_s:.0f} s into a {cfg.train.time_budget:g} s budget{still}", markup=False)
    if result.predicted_chars_per_sec:
        out.print(f"speed: {result.chars_per_sec:,.0f} chars/s (the width probe predicted "
                  f"{result.predicted_chars_per_sec:,.0f})", markup=False)
    out.print(f"sample it: charrnn sample {shown_path(result.run_dir)}", markup=False)
