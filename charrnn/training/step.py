"""One training step: what one batch does to the model.

The loop and the width probe (autosize) take this same step, so the probe times what the run will do: the next
batch, forward under autocast, loss, backward (scaled for fp16; DDP's all-reduce under torchrun), unscale and clip,
the one host sync that agrees the loss and the loop's flags across ranks, and the optimizer update. Nothing
non-finite ever reaches the weights: a step whose loss or gradient is not finite raises before the update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.config import Config
from charrnn.device import autocast
from charrnn.model import CharRNN, Hidden, detach_hidden
from charrnn.training.averaging import weight_average
from charrnn.training.distributed import DistContext
from charrnn.training.optimizer import build_optimizer


class NonFiniteStep(Exception):
    """The loss or the gradient norm of a step was not finite; the update was not applied."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(what)


@dataclass
class StepResult:
    loss: float  # the global batch's mean loss
    grad_norm: float
    flags: list[bool]  # each flag given to the step, or-ed over the ranks


@dataclass
class TrainingStep:
    """The parts a step needs: `forward` is the model as trained (DDP-wrapped, compiled), `model` its parameters,
    `average` the moving average of them that the run evaluates (train.ema; None when off)."""

    forward: torch.nn.Module
    model: CharRNN
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: str
    grad_clip: float
    dist: DistContext
    average: torch.optim.swa_utils.AveragedModel | None = None
    # Under train.ema, which of the two the last evaluation scored better (Validation.score_step scores both): the
    # one that checkpoints hold as "model" and that samples and the final report use.
    scores_average: bool = True

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device

    @property
    def evaluated(self) -> CharRNN:
        """The model the run samples and checkpoints as "model": the weights' moving average where it scored better
        than the weights at the last evaluation (train.ema), else the weights."""
        return self.average.module if self.average is not None and self.scores_average else self.model

    def state_dicts(self) -> dict:
        """What a checkpoint holds of the step: "model" the weights as scored (under train.ema the better of the
        average and the weights at the last evaluation), its optimizer and scaler, and under train.ema both sets
        for --resume: "trained_model" the weights as trained, "average_model" their average, and "scored" which
        of the two "model" is (torch.save writes the set that "model" shares once)."""
        states = {"model": self.evaluated.state_dict(), "optimizer": self.optimizer.state_dict(),
                  "scaler": self.scaler.state_dict()}
        if self.average is not None:
            states["trained_model"] = self.model.state_dict()
            states["average_model"] = self.average.module.state_dict()
            states["scored"] = "average" if self.scores_average else "weights"
        return states

    def __call__(self, batcher, hidden: Hidden | None, lr: float, *flags: bool) -> tuple[StepResult, Hidden | None]:
        """One update on the batcher's next batch at learning rate lr, carrying hidden (stateful batching);
        returns the step's loss, gradient norm and agreed flags, and the hidden state to carry on."""
        if batcher.stateful and batcher.starts_new_epoch:
            hidden = None
        inputs, targets = (t.to(self.device, non_blocking=True) for t in batcher.next_batch())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(inputs.device, self.precision):
            logits, new_hidden = self.forward(inputs, hidden)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # The only wait for the device in a step: loss, gradient norm and flags in one transfer (one collective).
        loss_value, norm_value, agreed = self.dist.step_sync(loss, grad_norm, *flags)
        if not math.isfinite(loss_value):
            raise NonFiniteStep(f"training loss became {loss_value}")
        if not self.scaler.is_enabled() and not math.isfinite(norm_value):
            raise NonFiniteStep(f"gradient norm became {norm_value}")  # fp16's scaler skips such a step itself
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update_parameters(self.model)
        carried = detach_hidden(new_hidden) if batcher.stateful else None
        return StepResult(loss_value, norm_value, agreed), carried


def build_step(cfg: Config, model: CharRNN, precision: str, dist: DistContext, *,
               compile: bool | None = None) -> tuple[TrainingStep, list[str]]:
    """A run's training step (its optimizer and scaler, the model as trained: DDP, torch.compile as
    train.compile says unless compile is given) and notes for the console."""
    device = next(model.parameters()).device
    enabled = cfg.train.compile if compile is None else compile
    forward, notes = _maybe_compile(dist.wrap(model), enabled, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 gradients need loss scaling
    step = TrainingStep(forward, model, build_optimizer(cfg, model), scaler, precision, cfg.train.grad_clip, dist,
                        weight_average(model, cfg.train.ema))
    return step, notes


def _maybe_compile(model: torch.nn.Module, enabled: bool, device: torch.device) -> tuple:
    """(the training forward, notes for the console): torch.compile where it can pay off (CUDA) and a
    one-line explanation where it does not."""
    if not enabled:
        return model, []
    if device.type != "cuda":
        # Measured on a 2-core AVX2 CPU, 2x128 LSTM, batch 32x64: eager 63 ms/step, compiled 114 ms/step after
        # 23 s of compiling (nn.LSTM/GRU already run as one oneDNN kernel; compiling unrolls them).
        why = ("torch.compile makes recurrent models slower on CPU (measured 114 vs 63 ms/step, after ~20 s "
               "of compiling)" if device.type == "cpu" else "it is used on CUDA only")
        return model, [f"note: train.compile ignored on {device.type.upper()}: {why}"]
    return torch.compile(model), ["note: train.compile: compiling the model with torch.compile (first steps are slow)"]
