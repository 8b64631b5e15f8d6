"""One training session over a run folder: what is fixed while it runs (config, data, model, optimizer, tracker)
and the named parts of the loop that advance its TrainState: `train_step`, `validate`, `save_last`,
`stop_reason`, `finish`. The loop itself is in loop.py; setup.py builds a Trainer."""

from __future__ import annotations

import contextlib
import sys
from contextlib import contextmanager

import torch

from charrnn.config import Config, config_yaml
from charrnn.errors import Interrupted, TrainingFailed
from charrnn.model import CharRNN
from charrnn.run import status as run_status
from charrnn.run.folder import RunPaths, clear_run_dir
from charrnn.safe_files import atomic_write
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.tracking import Tracker, flat_hparams, truncate_metrics
from charrnn.training.checkpointing import Checkpoints
from charrnn.training.clock import Stopwatch
from charrnn.training.distributed import DistContext
from charrnn.training.optimizer import lr_factor, step_limit_key
from charrnn.training.signals import stop_on_signals
from charrnn.training.state import RunResult, StepOutcome, TrainState, rng_state
from charrnn.training.step import NonFiniteStep, TrainingStep
from charrnn.training.validation import Validation, spent_rule
from charrnn.vocab import Vocab


class Trainer:
    """One training session over a run folder: what is fixed while it runs, and the state it advances."""

    def __init__(self, cfg: Config, *, dist: DistContext, paths: RunPaths, precision: str, vocab: Vocab,
                 validation: Validation, model: CharRNN, step: TrainingStep, batcher, state: TrainState,
                 total_steps: int | None, discard_on_failure: bool, quiet: bool, notes: list[str],
                 predicted_chars_per_sec: float | None = None):
        self.cfg, self.dist, self.paths, self.precision, self.vocab = cfg, dist, paths, precision, vocab
        self.model, self.step, self.batcher, self.state, self.validation = model, step, batcher, state, validation
        self.total_steps, self.notes, self.quiet = total_steps, notes, quiet
        self.predicted_chars_per_sec = predicted_chars_per_sec  # hidden_size: auto's probe, for the summary
        self.first_char = vocab.chars[int(batcher.ids[0])]
        self.checkpoints = Checkpoints(cfg, paths, dist, vocab, self.first_char, step, batcher)
        # A new run that fails before its first checkpoint takes back what it wrote (the lock then removes a
        # folder it made); a resumed one never discards anything.
        self.discard_on_failure = discard_on_failure
        self.checkpoints.saved_step = state.step or None  # a resumed run's checkpoint
        self.hidden = dist.rank_rows(state.hidden)  # this rank's rows of the carried state
        self.clock = Stopwatch(state.elapsed)
        self.speed = 0.0
        self._speed_from = (self.clock.elapsed(), state.step)  # the window chars/s is measured over
        self._session_from = self._speed_from  # the whole session's mean, for the result
        self.tracker: Tracker | None = None
        self.evals_done = 0  # in this session: histograms are logged every log.histogram_every evals

    # -- the session ---------------------------------------------------------------------------------------------
    @contextmanager
    def session(self):
        """Signals become a flag; the run folder gets its files and status; a run that fails before its first
        checkpoint leaves no half-made folder behind."""
        dist, paths = self.dist, self.paths
        try:
            dist.barrier()
            if dist.is_main:
                # Rewritten on every resume: a kill midway must not leave half a config that breaks the next one.
                atomic_write(paths.config, lambda f: f.write(config_yaml(self.cfg).encode("utf-8")))
                atomic_write(paths.vocab, lambda f: f.write(self.vocab.to_json().encode("utf-8")))
                if self.state.step:
                    truncate_metrics(paths.metrics, self.state.step)
                run_status.write(paths.root, "running", self.state.step)
            self.tracker = _open_tracker(self, resumed=bool(self.state.step))
            with stop_on_signals(repeat_grace_s=1.0 if dist.world_size > 1 else 0.0) as caught:
                self.step.forward.train()
                yield caught
        except Interrupted as exc:
            self._end("interrupted", exc.step, None)
            raise
        except KeyboardInterrupt:  # a second signal: the status names the step the run resumes from
            self._end("interrupted", self.checkpoints.saved_step or 0, None)
            raise
        except BaseException as exc:
            self._end("failed", self.state.step, _reason(exc))
            if self.discard_on_failure and not self.checkpoints.written and dist.is_main:
                self._close_tracker(quietly=True)
                clear_run_dir(paths.root, best_effort=True)
            raise
        finally:
            self._close_tracker(quietly=sys.exc_info()[1] is not None)  # a full disk must not hide the first error

    def _end(self, status: str, step: int, detail: str | None) -> None:
        """Record how the session ended: status.json for `charrnn info`, the HParams session status."""
        if not self.dist.is_main or not self.paths.root.is_dir():
            return
        # TensorBoard has no "stopped" status: an interrupted session shows as unknown, a failed one as failure.
        with contextlib.suppress(OSError, TrainingFailed):  # a full disk must not hide the error that ended the run
            run_status.write(self.paths.root, status, step, detail)
            if self.tracker is not None:
                self.tracker.session_status({"finished": "success", "interrupted": "unknown"}.get(status, "failure"))

    def _close_tracker(self, quietly: bool = False) -> None:
        if self.tracker is not None:
            tracker, self.tracker = self.tracker, None
            with contextlib.suppress(*((OSError, TrainingFailed) if quietly else ())):
                tracker.close()

    # -- the parts of the loop -----------------------------------------------------------------------------------
    def agreed_out_of_time(self) -> bool:
        """Whether the budget is spent, as all ranks agree (a resumed run may have nothing left to do)."""
        return self.dist.max_over_ranks(float(self._out_of_time()))[0] > 0

    def train_step(self, signalled: bool) -> StepOutcome:
        """One optimizer update on the next batch; the ranks agree on the loss and on every flag."""
        state = self.state
        lr = self.cfg.train.lr * lr_factor(self.cfg, state.step, self._progress())
        try:
            out, self.hidden = self.step(self.batcher, self.hidden, lr, signalled, self._out_of_time())
        except NonFiniteStep as exc:
            raise TrainingFailed(f"{exc.what} at step {state.step + 1}; nothing was saved from this step. Last "
                                 f"good checkpoint: {self.checkpoints.last_good()}. Try a lower train.lr or "
                                 "train.grad_clip") from None
        state.step += 1
        state.window_loss += out.loss
        state.window_steps += 1
        self.speed = self._chars_per_sec(*self._speed_from)
        self.tracker.scalars(state.step, {"train/loss": out.loss, "train/lr": lr, "train/grad_norm": out.grad_norm,
                                          "train/chars_per_sec": self.speed})
        self.tracker.progress(state.step, self._progress(), out.loss, self.speed)
        return StepOutcome(out.loss, out.grad_norm, lr, *out.flags)

    def stop_reason(self, time_up: bool) -> str | None:
        """Why the run stops after the current step, or None to go on."""
        if self.total_steps is not None and self.state.step >= self.total_steps:
            return step_limit_key(self.cfg, self.total_steps)
        return "time_budget" if time_up else None

    def sync_ranks(self) -> None:
        """Before an eval or checkpoint: gather the global batch's hidden state and every rank's RNG, and agree
        that the weights are finite (so a divergence stops all ranks at once, not rank 0 alone)."""
        state, dist = self.state, self.dist
        state.hidden = dist.gather_rows(self.hidden)
        if dist.world_size > 1:
            state.rank_rngs = dist.gather_objects(rng_state(self.step.device))
        finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if dist.any_rank(not finite):
            raise TrainingFailed(f"the weights are no longer finite at step {state.step}; nothing was saved from "
                                 f"this step. Last good checkpoint: {self.checkpoints.last_good()}. Try a lower "
                                 "train.lr")

    def validate(self, stopped_by: str | None = None) -> str | None:
        """Score the validation text, log it (one metrics line), keep best.pt; reset the train-loss window.
        Returns why the run stops: stopped_by, or "early_stop" when train.patience runs out."""
        state = self.state
        train_loss = state.window_loss / state.window_steps if state.window_steps else float("nan")
        metrics, both = self.validation.score_step(self.step, state.step, self.checkpoints.last_good())
        better, stopped_by = self.validation.record(state, metrics, stopped_by, self._progress())
        record = {"step": state.step, "train_loss": train_loss, "val_loss": metrics.loss, "val_bpc": metrics.bpc,
                  "val_accuracy": metrics.accuracy, "lr": self.step.optimizer.param_groups[0]["lr"],
                  "chars_per_sec": self.speed, "elapsed_s": round(self.clock.elapsed(), 3), **both}
        if stopped_by:
            record["stopped_by"] = stopped_by
        self.tracker.eval_record(record)
        self.evals_done += 1
        if self.cfg.log.histogram_every and self.evals_done % self.cfg.log.histogram_every == 0:
            self.tracker.parameter_histograms(state.step, self.model)
        state.window_loss, state.window_steps = 0.0, 0
        self._speed_from = (self.clock.elapsed(), state.step)
        if better:
            self.checkpoints.save(self.paths.best, state, self.clock.elapsed())
        return stopped_by

    def sample_due(self) -> bool:
        every, log = self.cfg.log.sample_every, self.cfg.log
        return bool(every) and log.tensorboard and self.state.step % every == 0 and self.dist.is_main

    def log_sample(self) -> None:
        text = sample_text(self.step.evaluated, self.vocab, prime=self.first_char, length=self.cfg.log.sample_length,
                           opts=SamplingOptions(), seed=self.cfg.seed + self.state.step, device=self.step.device)[0]
        self.tracker.text(self.state.step, "samples", text)

    def save_last(self) -> None:
        self.tracker.flush()  # the event files must not lag behind the checkpoint that a crash resumes from
        self.checkpoints.save(self.paths.last, self.state, self.clock.elapsed())

    def finish(self, stopped_by: str) -> None:
        """After the last step: make sure the final model was scored, sampled and its embedding logged."""
        state = self.state
        if state.val_step != state.step:  # resumed at the end, or nothing to do: report the current model
            self.validate(stopped_by)
        if self.checkpoints.saved_step != state.step or not self.paths.last.is_file():
            self.save_last()  # a run stopped before its first checkpoint (a tiny time budget) stays resumable
        every = self.cfg.log.sample_every
        if every and state.step % every and self.cfg.log.tensorboard and self.dist.is_main:  # not sampled yet
            self.log_sample()
        if self.step.evaluated.embedding is not None:
            self.tracker.embedding(state.step, self.step.evaluated.embedding.weight, self.vocab.chars)
        self._end("finished", state.step, stopped_by)

    def result(self, stopped_by: str | None) -> RunResult:
        state = self.state
        return RunResult(self.paths.root, state.step, self.clock.elapsed(), self._chars_per_sec(*self._session_from),
                         state.val, state.best_val, stopped_by or "max_steps", self.dist.is_main, state.best_step,
                         self.predicted_chars_per_sec,
                         spent_rule(self.cfg.train, state) if stopped_by == "early_stop" else None)

    # -- small helpers ---------------------------------------------------------------------------------------
    def _chars_per_sec(self, since: float, step0: int) -> float:
        """Characters trained per second from (clock seconds, step) to now, all processes together: every step
        trains train.batch_size rows (the global batch, split over the ranks) of train.seq_length. The last
        figure when no time has passed."""
        now = self.clock.elapsed()
        if now <= since:
            return self.speed
        return (self.state.step - step0) * self.cfg.train.batch_size * self.cfg.train.seq_length / (now - since)

    def _out_of_time(self) -> bool:
        budget = self.cfg.train.time_budget
        return budget is not None and self.clock.elapsed() >= budget

    def _progress(self) -> float:
        """The fraction of the run done, by steps or by time under a budget (the larger)."""
        done = [self.state.step / self.total_steps] if self.total_steps else []
        if self.cfg.train.time_budget:
            done.append(self.clock.elapsed() / self.cfg.train.time_budget)
        return max(done)


def _open_tracker(trainer: Trainer, resumed: bool) -> Tracker:
    """The session's tracker, with the run's hyperparameters (a new run) and the notes of the set-up."""
    cfg, state = trainer.cfg, trainer.state
    tracker = Tracker(trainer.paths.root, tensorboard=cfg.log.tensorboard, quiet=trainer.quiet,
                      enabled=trainer.dist.is_main, total_steps=trainer.total_steps, time_budget=cfg.train.time_budget,
                      start_step=state.step, purge_step=state.step + 1 if resumed else None)
    if not resumed:
        tracker.hparams(flat_hparams(cfg.to_dict()), ["val/loss", "val/bpc", "val/accuracy"])
    tracker.session_status("running")
    if trainer.validation.name == "train":
        tracker.message("note: the validation split is empty; evaluating on the training text")
    for note in trainer.notes:
        tracker.message(note)
    return tracker


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    return text[:200]
