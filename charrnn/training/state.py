"""What a run carries from step to step (TrainState, saved whole in every checkpoint) and what it returns."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from charrnn.evaluate import Metrics
from charrnn.model import Hidden


@dataclass
class RunResult:
    run_dir: Path
    step: int
    elapsed_s: float
    chars_per_sec: float
    val: Metrics | None  # the last evaluation (of the final model)
    best_val_loss: float
    stopped_by: str  # "max_steps" | "max_epochs" | "time_budget" | "early_stop"
    is_main: bool = True  # False in the other processes of a torchrun job (they write nothing)
    best_step: int = -1  # the step best.pt holds: the model `sample` and `eval` use by default
    predicted_chars_per_sec: float | None = None  # hidden_size: auto's prediction for the run, to compare
    stop_rule: str | None = None  # under early_stop, the rule that stopped it: "patience" or "patience_rises"

    def load(self, checkpoint: str = "best", device: str = "cpu"):
        """The trained model (charrnn.load of the run folder): `charrnn.train(...).load().sample("h", 6)`."""
        from charrnn.trained import load

        return load(self.run_dir, checkpoint=checkpoint, device=device)

    def history(self) -> list[dict]:
        """The run's metrics.jsonl: one dict per evaluation (step, train_loss, val_loss, val_bpc, ...)."""
        path = Path(self.run_dir) / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return [json.loads(line) for line in lines if line.strip()]
    already_finished: bool = False  # --resume of a finished run: nothing was trained or written


@dataclass
class TrainState:
    """Everything about a run that changes as it trains: saved whole in each checkpoint, restored whole."""

    step: int = 0
    best_val: float = math.inf
    best_step: int = -1  # the step best.pt holds
    evals_since_best: int = 0  # evaluations without a better val loss (train.patience, patience_min_delta)
    evals_rising: int = 0  # evaluations in a row that each scored worse than the one before (patience_rises)
    elapsed: float = 0.0  # training seconds of the sessions before this one
    hidden: Hidden | None = None  # the global batch's carried hidden state (stateful batching), as last synced
    data: dict = field(default_factory=dict)  # the batcher's position
    rng: dict = field(default_factory=dict)  # this process's torch (and CUDA) generator states
    rank_rngs: list | None = None  # every rank's generator states under torchrun (dropout masks differ per rank)
    window_loss: float = 0.0  # train losses since the last evaluation, for its metrics line
    window_steps: int = 0
    val: Metrics | None = None  # the last evaluation, and the step it scored
    val_step: int = -1
    corpus: dict | None = None  # the text trained on: files, lengths, fingerprints (data/fingerprint.py)

    def to_dict(self) -> dict:
        return {
            "step": self.step, "best_val": self.best_val, "best_step": self.best_step,
            "evals_since_best": self.evals_since_best, "evals_rising": self.evals_rising, "elapsed": self.elapsed,
            "hidden": self.hidden,
            "data": self.data, "rng": self.rng, "rank_rngs": self.rank_rngs,
            "window": (self.window_loss, self.window_steps),
            "val": self.val.to_dict() if self.val else None, "val_step": self.val_step, "corpus": self.corpus,
        }

    @classmethod
    def from_dict(cls, saved: dict) -> TrainState:
        window_loss, window_steps = saved.get("window", (0.0, 0))
        return cls(step=int(saved["step"]), best_val=float(saved["best_val"]), elapsed=float(saved["elapsed"]),
                   best_step=int(saved.get("best_step", -1)), evals_since_best=int(saved.get("evals_since_best", 0)),
                   evals_rising=int(saved.get("evals_rising", 0)),
                   hidden=saved.get("hidden"), data=saved["data"], rng=saved["rng"],
                   rank_rngs=saved.get("rank_rngs"), window_loss=float(window_loss), window_steps=int(window_steps),
                   val=Metrics(**saved["val"]) if saved.get("val") else None, val_step=int(saved.get("val_step", -1)),
                   corpus=saved.get("corpus"))


@dataclass
class StepOutcome:
    loss: float  # the global batch's mean loss
    grad_norm: float
    lr: float
    signalled: bool  # some rank caught SIGINT/SIGTERM
    time_up: bool  # some rank ran out of the time budget


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
