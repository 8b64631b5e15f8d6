"""The training loop: `train(config)` is the whole of `charrnn train`, callable from a notebook or a test.

A run's mutable progress lives in one `TrainState` (step, best val, carried hidden state, data position, RNG,
timing, eval window), the very object a checkpoint saves and resume restores. A `Trainer` holds what is fixed
for the session (config, data, model, optimizer, tracker) and does the named parts of the loop. `train()` below
reads top to bottom."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

from charrnn.config import Config
from charrnn.errors import Interrupted
from charrnn.paths import user_path
from charrnn.run.lock import hold_run_folder
from charrnn.training import distributed
from charrnn.training.resume import finished_reason
from charrnn.training.setup import setup_trainer
from charrnn.training.state import RunResult


def train(cfg: Config, *, run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          quiet: bool = False, device: str | None = None) -> RunResult:
    """Train a model as the config says, writing checkpoints, metrics and TensorBoard logs into the run folder.

    With resume=True the run folder's own config and last.pt are used (cfg only supplies overrides such
    as a longer max_steps) and the run continues exactly where it stopped.
    """
    root = user_path(run_dir) if run_dir is not None else user_path(cfg.log.dir) / cfg.name
    # One writer per run folder: a second trainer is refused before anything in the folder is touched.
    with hold_run_folder(root, create=not resume, enabled=distributed.context().is_main):
        return _train(cfg, root, resume=resume, overwrite=overwrite, quiet=quiet, device=device)


def _train(cfg: Config, root: Path, *, resume: bool, overwrite: bool, quiet: bool, device: str | None) -> RunResult:
    trainer = setup_trainer(cfg, root=root, resume=resume, overwrite=overwrite, quiet=quiet, device=device)
    t, state = trainer.cfg.train, trainer.state
    if resume and (done := finished_reason(trainer.cfg, state, trainer.total_steps, root, trainer.dist)):
        return dataclasses.replace(trainer.result(done), already_finished=True)  # nothing written, nothing logged
    with trainer.session() as signals:
        if state.step == 0 and trainer.cfg.init_from:
            trainer.validate()  # fine-tuning: the source model on the new text, where the run starts from
        stopped_by = trainer.stop_reason(time_up=trainer.agreed_out_of_time())
        while stopped_by is None:
            out = trainer.train_step(signalled=bool(signals))  # one update; the ranks agree on every flag
            stopped_by = trainer.stop_reason(out.time_up)
            stop_now = out.signalled or (trainer.dist.world_size == 1 and bool(signals))  # alone, a late one too
            checkpoint_due = state.step % t.checkpoint_every == 0 or stopped_by or stop_now
            eval_due = state.step % t.eval_every == 0 or stopped_by
            if checkpoint_due or eval_due:
                trainer.sync_ranks()  # a collective, so only at steps that are the same on every rank
            if eval_due:
                stopped_by = trainer.validate(stopped_by)  # or "early_stop", when train.patience runs out
                checkpoint_due = checkpoint_due or stopped_by
            if trainer.sample_due():
                trainer.log_sample()
            if checkpoint_due:
                trainer.save_last()
            if stop_now:
                raise Interrupted(signals[0] if signals else signal.SIGTERM, state.step, trainer.paths.root)
        trainer.finish(stopped_by)
    return trainer.result(stopped_by)
