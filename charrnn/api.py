"""`charrnn.train`: a training run from Python, as `charrnn train` starts one (`charrnn.load` is in trained.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charrnn.config import Config
from charrnn.errors import UserError

if TYPE_CHECKING:
    from charrnn.training.state import RunResult


def override_strings(overrides: dict[str, Any]) -> list[str]:
    """Keyword overrides as `--set` strings: train__lr=0.01 (or "train.lr": 0.01) -> 'train.lr=0.01'. Each value
    is written as JSON, which the config reads as YAML: numbers, booleans, None, strings and lists keep their type.
    """
    def plain(value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    return [f"{key.replace('__', '.')}={json.dumps(plain(value), default=str, ensure_ascii=False)}"
            for key, value in overrides.items()]


def train(config: str | Path | dict | Config, *, data: str | Path | list | None = None,
          run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False,
          device: str | None = None, **overrides: Any) -> RunResult:
    """Train a model as `charrnn train` does and return the finished run (RunResult: run_dir, step, val metrics,
    best_val_loss, stopped_by, elapsed_s; .load() gives the trained Model, .history() its metrics.jsonl).

    config: a YAML file's path, a dict of the same keys, or a Config. Overrides are keywords, a section and its
    key joined by a double underscore (train__lr=0.01, model__cell="gru", name="mine"), or dotted keys passed
    as **{"train.lr": 0.01}; they are `--set train.lr=0.01`. data: the text file(s) or folder to train on (as
    --data); run_dir: the run folder (default <log.dir>/<name>); resume, overwrite, quiet and device as the
    CLI's flags. Progress shows as a bar in a terminal and as an HTML bar in a Jupyter notebook.

    Example:
        >>> run = charrnn.train("configs/ihello.yaml", train__max_steps=50, log__dir="/tmp/runs")
        >>> run.step
        50
        >>> run = charrnn.train({"data": {"path": "data/ihello.txt", "val_fraction": 0},
        ...                      "model": {"hidden_size": 16}, "train": {"seq_length": 6, "batch_size": 1,
        ...                      "max_steps": 100}}, run_dir="/tmp/runs/hi", overwrite=True)
        >>> run.load().sample("h", 6, greedy=True)
        'hihello'
    """
    # Imported here, not at the top: `import charrnn` must not import the training loop (nor TensorBoard), and
    # read-only uses of the package never need it.
    from charrnn.training.loop import train as run_training
    from charrnn.training.run_config import training_config

    if resume and overwrite:
        raise UserError("resume=True continues the run and overwrite=True replaces it: pass one of them")
    cfg, run_dir = training_config(config, override_strings(overrides), data=data, run_dir=run_dir, resume=resume)
    return run_training(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, quiet=quiet, device=device)
