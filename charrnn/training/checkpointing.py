"""Writing a run's checkpoints: last.pt (what --resume continues from) and best.pt (the lowest val loss so far).
A checkpoint holds the model, the optimizer, the scaler and the whole TrainState, so resuming is "load the state,
continue the loop"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.config import Config
from charrnn.run.checkpoint import save_checkpoint
from charrnn.run.folder import RunPaths
from charrnn.training.distributed import DistContext
from charrnn.training.state import TrainState, rng_state
from charrnn.training.step import TrainingStep
from charrnn.vocab import Vocab


@dataclass
class Checkpoints:
    """Saves a session's checkpoints (rank 0 only) and remembers how many it wrote."""

    cfg: Config
    paths: RunPaths
    dist: DistContext
    vocab: Vocab
    first_char: str  # what `sample` starts from when given no prime
    step: TrainingStep  # the model as trained and as scored (train.ema), its optimizer and scaler
    batcher: object
    written: int = 0
    saved_step: int | None = None  # the step --resume would continue from (last.pt, else best.pt)

    def save(self, path: Path, state: TrainState, elapsed: float) -> None:
        """Write a checkpoint of the model and the whole state at this step (atomically)."""
        if not self.dist.is_main:
            return
        state.elapsed = elapsed
        state.data = self.batcher.state_dict()
        state.rng = rng_state(self.step.device)
        payload = {"config": self.cfg.to_dict(), "vocab": self.vocab.chars, "first_char": self.first_char,
                   **self.step.state_dicts(), **state.to_dict()}
        save_checkpoint(payload, path)
        self.written += 1
        if path == self.paths.last or not self.paths.last.is_file():  # --resume takes last.pt, else best.pt
            self.saved_step = state.step

    def last_good(self) -> str:
        """The checkpoint a failed run can be resumed from, for its error message."""
        return str(self.paths.last) if self.paths.last.exists() else "none"
