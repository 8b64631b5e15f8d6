"""The training loop: `train(config)` is the whole of `charrnn train`, callable from a notebook or a test.

A run's mutable progress lives in one `TrainState` (step, best val, carried hidden state, data position, RNG,
timing, eval window), the very object a checkpoint saves and resume restores. A `Trainer` holds what is fixed
for the session (config, data, model, optimizer, tracker) and does the named parts of the loop: `train_step`,
`evaluate`, `save_last`, `stop_reason`. `train()` below reads top to bottom; the parts follow it.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn import autosize, distributed, finetune, runstatus
from charrnn.checkpoint import (
    RunPaths,
    atomic_write,
    check_run_dir,
    clear_run_dir,
    load_resume_checkpoint,
    prepare_run_dir,
    save_checkpoint,
)
from charrnn.config import Config, apply_overrides, config_from_dict, config_yaml, read_yaml
from charrnn.corpus import default_cache_dir, open_corpus, resolve_data_paths  # noqa: F401  (train's API)
from charrnn.data import make_batcher
from charrnn.device import autocast, emulated_bf16_note, resolve_device, resolve_precision
from charrnn.errors import TrainingFailed, UserError
from charrnn.evaluate import Metrics, evaluate
from charrnn.memory import check_training_fits
from charrnn.model import CharRNN, Hidden, detach_hidden, select_hidden
from charrnn.runlock import hold_run_folder
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.tracking import Stopwatch, Tracker
from charrnn.vocab import Vocab


@dataclass
class RunResult:
    run_dir: Path
    step: int
    elapsed_s: float
    chars_per_sec: float
    val: Metrics | None
    best_val_loss: float
    stopped_by: str  # "max_steps" | "max_epochs" | "time_budget"
    is_main: bool = True  # False in the other processes of a torchrun job (they write nothing)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        super().__init__(f"interrupted at step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def train(cfg: Config, *, run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          quiet: bool = False, device: str | None = None) -> RunResult:
    """Train a model as the config says, writing checkpoints, metrics and TensorBoard logs into the run folder.

    With resume=True the run folder's own config and last.pt are used (cfg only supplies overrides such
    as a longer max_steps) and the run continues exactly where it stopped.
    """
    root = Path(run_dir) if run_dir is not None else Path(cfg.log.dir) / cfg.name
    # One writer per run folder: a second trainer is refused before anything in the folder is touched.
    with hold_run_folder(root, create=not resume, enabled=distributed.context().is_main):
        return _train(cfg, root, resume=resume, overwrite=overwrite, quiet=quiet, device=device)


def _train(cfg: Config, root: Path, *, resume: bool, overwrite: bool, quiet: bool, device: str | None) -> RunResult:
    trainer = Trainer.setup(cfg, root=root, resume=resume, overwrite=overwrite, quiet=quiet, device=device)
    t, state = trainer.cfg.train, trainer.state
    with trainer.session() as signals:
        if state.step == 0 and trainer.cfg.init_from:
            trainer.evaluate()  # fine-tuning: the source model on the new text, where the run starts from
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
                stopped_by = trainer.evaluate(stopped_by)  # or "early_stop", when train.patience runs out
                checkpoint_due = checkpoint_due or stopped_by
            if trainer.sample_due():
                trainer.log_sample()
            if checkpoint_due:
                trainer.save_last()
            if stop_now:
                raise Interrupted(signals[0] if signals else signal.SIGTERM, state.step, trainer.paths.root)
        trainer.finish(stopped_by)
    return trainer.result(stopped_by)


# -- the state a checkpoint carries -----------------------------------------------------------------------

@dataclass
class TrainState:
    """Everything about a run that changes as it trains: saved whole in each checkpoint, restored whole."""

    step: int = 0
    best_val: float = math.inf
    best_step: int = -1  # the step best.pt holds
    evals_since_best: int = 0  # evaluations without a better val loss (train.patience)
    elapsed: float = 0.0  # training seconds of the sessions before this one
    hidden: Hidden | None = None  # the global batch's carried hidden state (stateful batching), as last synced
    data: dict = field(default_factory=dict)  # the batcher's position
    rng: dict = field(default_factory=dict)  # this process's torch (and CUDA) generator states
    rank_rngs: list | None = None  # every rank's generator states under torchrun (dropout masks differ per rank)
    window_loss: float = 0.0  # train losses since the last evaluation, for its metrics line
    window_steps: int = 0
    val: Metrics | None = None  # the last evaluation, and the step it scored
    val_step: int = -1

    def to_dict(self) -> dict:
        return {
            "step": self.step, "best_val": self.best_val, "best_step": self.best_step,
            "evals_since_best": self.evals_since_best, "elapsed": self.elapsed, "hidden": self.hidden,
            "data": self.data, "rng": self.rng, "rank_rngs": self.rank_rngs,
            "window": (self.window_loss, self.window_steps),
            "val": self.val.to_dict() if self.val else None, "val_step": self.val_step,
        }

    @classmethod
    def from_dict(cls, saved: dict) -> TrainState:
        window_loss, window_steps = saved.get("window", (0.0, 0))
        return cls(step=int(saved["step"]), best_val=float(saved["best_val"]), elapsed=float(saved["elapsed"]),
                   best_step=int(saved.get("best_step", -1)), evals_since_best=int(saved.get("evals_since_best", 0)),
                   hidden=saved.get("hidden"), data=saved["data"], rng=saved["rng"],
                   rank_rngs=saved.get("rank_rngs"), window_loss=float(window_loss), window_steps=int(window_steps),
                   val=Metrics(**saved["val"]) if saved.get("val") else None, val_step=int(saved.get("val_step", -1)))


@dataclass
class StepOutcome:
    loss: float  # the global batch's mean loss
    grad_norm: float
    lr: float
    signalled: bool  # some rank caught SIGINT/SIGTERM
    time_up: bool  # some rank ran out of the time budget


# -- the session: setup, parts of the loop, teardown --------------------------------------------------------

class Trainer:
    """One training session over a run folder: what is fixed while it runs, and the state it advances."""

    def __init__(self, cfg: Config, *, dist: distributed.DistContext, paths: RunPaths, dev: torch.device,
                 precision: str, vocab: Vocab, splits: dict, model: CharRNN, optimizer: torch.optim.Optimizer,
                 batcher, scaler: torch.amp.GradScaler, state: TrainState, discard_on_failure: bool, quiet: bool):
        self.cfg, self.dist, self.paths, self.dev, self.precision = cfg, dist, paths, dev, precision
        self.model, self.optimizer, self.batcher, self.scaler, self.state = model, optimizer, batcher, scaler, state
        self.vocab = vocab
        self.train_ids, self.val_ids = splits["train"], splits["val"]
        self.val_name = "val"
        if len(self.val_ids) < 2:
            self.val_ids, self.val_name = self.train_ids, "train"  # tiny corpora: score the training text
        self.first_char = self.vocab.chars[int(self.train_ids[0])]
        self.total_steps = total_steps_for(cfg, len(self.train_ids))
        # A new run that fails before its first checkpoint takes back what it wrote (the lock then removes a
        # folder it made); a resumed one never discards anything.
        self.discard_on_failure, self.quiet = discard_on_failure, quiet
        self.hidden = _rank_rows(_hidden_to(state.hidden, dev), dist)  # this rank's rows of the carried state
        self.forward, self.notes = _maybe_compile(dist.wrap(model), cfg.train.compile, dev)
        self.clock = Stopwatch(state.elapsed)
        self.speed = 0.0
        self._speed_from = (self.clock.elapsed(), state.step)  # the window chars/s is measured over
        self._session_from = self._speed_from  # the whole session's mean, for the result
        self.tracker: Tracker | None = None
        self.checkpoints_written = 0
        self.evals_done = 0  # in this session: histograms are logged every log.histogram_every evals

    # -- setup --------------------------------------------------------------------------------------------
    @classmethod
    def setup(cls, cfg: Config, *, root: Path, resume: bool, overwrite: bool, quiet: bool,
              device: str | None) -> Trainer:
        """Check everything that can be wrong before the run folder is touched, then prepare it."""
        dist = distributed.context()
        if cfg.train.batch_size % dist.world_size:
            raise UserError(f"train.batch_size={cfg.train.batch_size} does not split evenly over "
                            f"{dist.world_size} processes; use a multiple of the process count so every rank "
                            "gets the same rows")
        saved = None
        cfg = resolve_data_paths(cfg)  # the run records absolute data paths and cache
        if resume:
            cfg, saved = _resume_checkpoint(root, cfg)
        elif dist.is_main:
            check_run_dir(root, overwrite=overwrite)  # a folder it may not use: named before the slow set-up
        dev = dist.device(resolve_device(device or cfg.train.device))
        precision = resolve_precision(cfg.train.precision, dev, cfg.model.cell)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        source = None
        if cfg.init_from and not resume:  # fine-tuning: the source's model, and its vocabulary extended
            source_path, source = finetune.source_checkpoint(cfg.init_from)
            cfg = finetune.with_source_model(cfg, source_path, source)
        vocab = Vocab(saved["vocab"]) if saved else None
        # One process per node encodes the corpus into the cache; the others then map the same id file.
        corpus = dist.node_first(lambda: open_corpus(cfg, vocab, quiet=quiet or not dist.is_main))
        if source is not None:
            vocab = finetune.extended_vocab(Vocab(source["vocab"]), corpus.vocab)
            if vocab != corpus.vocab:
                corpus = dist.node_first(lambda: open_corpus(cfg, vocab))
        splits = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)
        # model.hidden_size: auto and friends: probe this machine now; the probe's seconds count inside the budget.
        step_limit = total_steps_for(cfg, len(splits["train"]))
        cfg, auto_note, probe_s = autosize.resolve_auto(cfg, splits["train"], len(corpus.vocab), dev, precision,
                                                        dist=dist, step_limit=step_limit)
        check_training_fits(cfg, len(corpus.vocab), dev, dist.world_size)  # refuse what cannot fit, before building
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        batcher = make_batcher(cfg.train.batching, splits["train"], cfg.train.batch_size, cfg.train.seq_length,
                               cfg.seed, dist.rank, dist.world_size)
        model = CharRNN(len(corpus.vocab), cfg.model).to(dev)
        if source is not None:
            finetune.load_source_weights(model, source["model"], Vocab(source["vocab"]), corpus.vocab)
        optimizer = build_optimizer(cfg, model)
        scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")  # fp16 gradients need loss scaling
        if dist.rank:
            torch.manual_seed(_rank_seed(cfg.seed, dist.rank))  # each rank draws its own dropout masks
        state = TrainState(elapsed=probe_s)
        if saved:
            state = _restore(saved, model, optimizer, batcher, scaler, dev, dist, root)
        if resume:
            paths = prepare_run_dir(root, resume=True)
        else:
            paths = prepare_run_dir(root, overwrite=overwrite) if dist.is_main else RunPaths(root)
        trainer = cls(cfg, dist=dist, paths=paths, dev=dev, precision=precision, vocab=corpus.vocab, splits=splits,
                      model=model, optimizer=optimizer, batcher=batcher, scaler=scaler, state=state,
                      discard_on_failure=not resume, quiet=quiet)
        trainer.notes += [note for note in (emulated_bf16_note(precision, dev, cfg.model.cell), auto_note) if note]
        return trainer

    @contextmanager
    def session(self):
        """Signals become a flag; the run folder gets its files and status; a run that fails before its first
        checkpoint leaves no half-made folder behind."""
        dist, paths = self.dist, self.paths
        try:
            dist.barrier()
            if dist.is_main:
                # Rewritten on every resume: a kill midway must not leave half a config that breaks the next one.
                _write_atomically(paths.config, config_yaml(self.cfg))
                _write_atomically(paths.vocab, self.vocab.to_json())
                if self.state.step:
                    _truncate_metrics(paths.metrics, self.state.step)
                runstatus.write(paths.root, "running", self.state.step)
            self.tracker = self._open_tracker(resumed=bool(self.state.step))
            with _stop_on_signals(repeat_grace_s=1.0 if dist.world_size > 1 else 0.0) as caught:
                self.forward.train()
                yield caught
        except Interrupted as exc:
            self._end("interrupted", exc.step, None)
            raise
        except KeyboardInterrupt:
            self._end("interrupted", self.state.step, None)
            raise
        except BaseException as exc:
            self._end("failed", self.state.step, _reason(exc))
            if self.discard_on_failure and not self.checkpoints_written and dist.is_main:
                self._close_tracker()
                clear_run_dir(paths.root, best_effort=True)
            raise
        finally:
            self._close_tracker()

    def _open_tracker(self, resumed: bool) -> Tracker:
        cfg, state = self.cfg, self.state
        tracker = Tracker(self.paths.root, tensorboard=cfg.log.tensorboard, quiet=self.quiet,
                          enabled=self.dist.is_main, total_steps=self.total_steps, time_budget=cfg.train.time_budget,
                          start_step=state.step, purge_step=state.step + 1 if resumed else None)
        if not resumed:
            tracker.hparams(_flat_hparams(cfg), ["val/loss", "val/bpc", "val/accuracy"])
        tracker.session_status("running")
        if self.val_name == "train":
            tracker.message("note: the validation split is empty; evaluating on the training text")
        for note in self.notes:
            tracker.message(note)
        return tracker

    # -- the parts of the loop ------------------------------------------------------------------------------
    def agreed_out_of_time(self) -> bool:
        """Whether the budget is spent, as all ranks agree (a resumed run may have nothing left to do)."""
        _, (time_up,) = self.dist.step_sync(torch.zeros(()), self._out_of_time())
        return time_up

    def train_step(self, signalled: bool) -> StepOutcome:
        """One optimizer update on the next batch. Nothing non-finite ever reaches the weights."""
        cfg, state, model = self.cfg, self.state, self.model
        if self.batcher.stateful and self.batcher.starts_new_epoch:
            self.hidden = None
        inputs, targets = self.batcher.next_batch()
        inputs, targets = inputs.to(self.dev, non_blocking=True), targets.to(self.dev, non_blocking=True)
        lr = cfg.train.lr * lr_factor(cfg, state.step, self._progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm, new_hidden = backward_pass(self.forward, model, self.optimizer, self.scaler, inputs, targets,
                                                    self.hidden, precision=self.precision,
                                                    grad_clip=cfg.train.grad_clip)
        # The global batch's loss, and whether any rank caught a signal or ran out of time: one collective.
        loss_value, (signalled, time_up) = self.dist.step_sync(loss, signalled, self._out_of_time())
        bad = None if math.isfinite(loss_value) else f"training loss became {loss_value}"
        if bad is None and not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            bad = f"gradient norm became {grad_norm}"  # it would poison the weights (fp16's scaler skips it)
        if bad:
            raise TrainingFailed(f"{bad} at step {state.step + 1}; nothing was saved from this step. "
                                 f"Last good checkpoint: {self._last_good()}. Try a lower train.lr or train.grad_clip")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        state.step += 1
        self.hidden = detach_hidden(new_hidden) if self.batcher.stateful else None
        state.window_loss += loss_value
        state.window_steps += 1
        self._log_step(loss_value, grad_norm, lr)
        return StepOutcome(loss_value, grad_norm, lr, signalled, time_up)

    def _log_step(self, loss: float, grad_norm: float, lr: float) -> None:
        now = self.clock.elapsed()
        self.speed = self._chars_per_sec(*self._speed_from)
        self.tracker.scalars(self.state.step, {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                                               "train/chars_per_sec": self.speed})
        self.tracker.progress(self.state.step, now, loss, self.speed)

    def stop_reason(self, time_up: bool) -> str | None:
        """Why the run stops after the current step, or None to go on."""
        if self.total_steps is not None and self.state.step >= self.total_steps:
            return "max_steps" if self.cfg.train.max_steps == self.total_steps else "max_epochs"
        return "time_budget" if time_up else None

    def sync_ranks(self) -> None:
        """Before an eval or checkpoint: gather the global batch's hidden state and every rank's RNG, and agree
        that the weights are finite (so a divergence stops all ranks at once, not rank 0 alone)."""
        state, dist = self.state, self.dist
        state.hidden = dist.gather_rows(self.hidden)
        if dist.world_size > 1:
            state.rank_rngs = dist.gather_objects(_rng_state(self.dev))
        finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if dist.any_rank(not finite):
            raise TrainingFailed(f"the weights are no longer finite at step {state.step}; nothing was saved "
                                 f"from this step. Last good checkpoint: {self._last_good()}. Try a lower train.lr")

    def evaluate(self, stopped_by: str | None = None) -> str | None:
        """Score the validation text, log it (one metrics line), keep best.pt; reset the train-loss window.
        Returns why the run stops: stopped_by, or "early_stop" once train.patience evaluations in a row brought
        no better val loss (all ranks agree)."""
        state, cfg = self.state, self.cfg
        train_loss = state.window_loss / state.window_steps if state.window_steps else float("nan")
        state.val = evaluate(self.model, self.val_ids, batch_size=64, device=self.dev, precision=self.precision,
                             max_chars=cfg.train.eval_max_chars)
        state.val_step = state.step
        if not math.isfinite(state.val.loss):
            raise TrainingFailed(f"validation loss is {state.val.loss} at step {state.step}; "
                                 f"last good checkpoint: {self._last_good()}")
        better = state.val.loss < state.best_val
        state.evals_since_best = 0 if better else state.evals_since_best + 1
        patience = cfg.train.patience
        if stopped_by is None and self.dist.any_rank(bool(patience) and state.evals_since_best >= patience):
            stopped_by = "early_stop"
        record = {"step": state.step, "train_loss": train_loss, "val_loss": state.val.loss, "val_bpc": state.val.bpc,
                  "val_accuracy": state.val.accuracy, "lr": self.optimizer.param_groups[0]["lr"],
                  "chars_per_sec": self.speed, "elapsed_s": round(self.clock.elapsed(), 3)}
        if stopped_by:
            record["stopped_by"] = stopped_by
        self.tracker.eval_record(record)
        self.evals_done += 1
        if cfg.log.histogram_every and self.evals_done % cfg.log.histogram_every == 0:
            named = list(self.model.named_parameters())
            self.tracker.histograms(state.step, {f"weights/{n}": p for n, p in named})
            self.tracker.histograms(state.step, {f"grads/{n}": p.grad for n, p in named if p.grad is not None})
        state.window_loss, state.window_steps = 0.0, 0
        self._speed_from = (self.clock.elapsed(), state.step)
        if better:
            state.best_val, state.best_step = state.val.loss, state.step
            self._save(self.paths.best)
        return stopped_by

    def sample_due(self) -> bool:
        every = self.cfg.log.sample_every
        return bool(every) and self.state.step % every == 0 and self.dist.is_main

    def log_sample(self) -> None:
        text = sample_text(self.model, self.vocab, prime=self.first_char, length=self.cfg.log.sample_length,
                           opts=SamplingOptions(), seed=self.cfg.seed + self.state.step, device=self.dev)[0]
        self.tracker.text(self.state.step, "samples", text)

    def save_last(self) -> None:
        self.tracker.flush()  # the event files must not lag behind the checkpoint that a crash resumes from
        self._save(self.paths.last)

    def _save(self, path: Path) -> None:
        if not self.dist.is_main:
            return
        self.state.elapsed = self.clock.elapsed()
        self.state.data = self.batcher.state_dict()
        self.state.rng = _rng_state(self.dev)
        payload = {"config": self.cfg.to_dict(), "vocab": self.vocab.chars, "first_char": self.first_char,
                   "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scaler": self.scaler.state_dict(), **self.state.to_dict()}
        save_checkpoint(payload, path)
        self.checkpoints_written += 1

    def finish(self, stopped_by: str) -> None:
        """After the last step: make sure the final model was scored, sampled and its embedding logged."""
        state = self.state
        if state.val_step != state.step:  # resumed at the end, or nothing to do: report the current model
            self.evaluate(stopped_by)
        sampled_in_loop = self.cfg.log.sample_every and state.step % self.cfg.log.sample_every == 0
        if self.cfg.log.sample_every and not sampled_in_loop and self.dist.is_main and self.cfg.log.tensorboard:
            self.log_sample()
        if self.model.embedding is not None:
            self.tracker.embedding(state.step, self.model.embedding.weight, self.vocab.chars)
        self._end("finished", state.step, stopped_by)

    def result(self, stopped_by: str | None) -> RunResult:
        return RunResult(self.paths.root, self.state.step, self.clock.elapsed(),
                         self._chars_per_sec(*self._session_from), self.state.val, self.state.best_val,
                         stopped_by or "max_steps", self.dist.is_main)

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

    def _last_good(self) -> str:
        return str(self.paths.last) if self.paths.last.exists() else "none"

    def _end(self, status: str, step: int, detail: str | None) -> None:
        """Record how the session ended: status.json for `charrnn info`, the HParams session status."""
        if not self.dist.is_main or not self.paths.root.is_dir():
            return
        # TensorBoard has no "stopped" status: an interrupted session shows as unknown, a failed one as failure.
        with contextlib.suppress(OSError):  # a full disk must not hide the error that ended the run
            runstatus.write(self.paths.root, status, step, detail)
            if self.tracker is not None:
                self.tracker.session_status({"finished": "success", "interrupted": "unknown"}.get(status, "failure"))

    def _close_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    return text[:200]


def backward_pass(forward, model: CharRNN, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  inputs: torch.Tensor, targets: torch.Tensor, hidden: Hidden | None, *, precision: str,
                  grad_clip: float) -> tuple[torch.Tensor, float, Hidden]:
    """The part of a training step that the loop and the width probe (autosize) share: forward under autocast,
    loss, backward (scaled for fp16), unscale and clip. Returns (loss, gradient norm, hidden state after it)."""
    with autocast(inputs.device, precision):
        logits, new_hidden = forward(inputs, hidden)  # (B, T, V)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    return loss, float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)), new_hidden


# -- setup helpers -----------------------------------------------------------------------------------------

def _resume_checkpoint(root: Path, cfg: Config) -> tuple[Config, dict]:
    """The config to resume with (an auto keeps what the run chose) and last.pt, checked against each other."""
    paths = check_run_dir(root, resume=True)  # last.pt exists and the folder can be written
    saved = load_resume_checkpoint(paths)  # a damaged last.pt: the error names an intact checkpoint
    cfg = autosize.keep_resolved(cfg, saved["config"])
    _check_resumable(saved["config"], cfg)
    return cfg, saved


def _restore(saved: dict, model: CharRNN, optimizer, batcher, scaler, dev: torch.device,
             dist: distributed.DistContext, root: Path) -> TrainState:
    """Put a checkpoint's weights, optimizer, data position and RNG back; return its TrainState."""
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = TrainState.from_dict(saved)
        batcher.load_state_dict(state.data)
        rngs = state.rank_rngs
        if rngs is not None and len(rngs) == dist.world_size:
            _set_rng_state(rngs[dist.rank], dev)
        elif dist.rank == 0:
            _set_rng_state(state.rng, dev)
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise UserError(f"cannot resume from {RunPaths(root).last}: it does not fit this run "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); start a new run") from None
    return state


def _rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank other than 0 (rank 0 keeps the run's stream, as a single process)."""
    return (seed * 1_000_003 + rank * 7_919) % (2**63)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(model.parameters())
    if t.optimizer in ("adamw", "adam"):
        # The fused kernel updates every parameter in one pass (CPU and CUDA): for small models the optimizer
        # step is a visible share of the step time.
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        fused = params[0].device.type in ("cpu", "cuda")
        return cls(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def lr_factor(cfg: Config, step: int, progress: float) -> float:
    """Multiplier of the base LR at a step; progress in [0, 1] is the fraction of the run done
    (by steps, or by time under a time budget), so the schedule stretches over either."""
    t = cfg.train
    if step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    if t.lr_schedule == "cosine":
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if t.lr_schedule == "step":
        return t.lr_step_gamma ** math.floor(progress / t.lr_step_every)
    return 1.0


def total_steps_for(cfg: Config, train_chars: int) -> int | None:
    """The step limit implied by max_steps and max_epochs (the smaller); None under a pure time budget."""
    limits = []
    if cfg.train.max_steps is not None:
        limits.append(cfg.train.max_steps)
    if cfg.train.max_epochs is not None:
        per_step = cfg.train.batch_size * cfg.train.seq_length
        limits.append(max(1, math.ceil(cfg.train.max_epochs * train_chars / per_step)))
    return min(limits) if limits else None


@contextmanager
def _stop_on_signals(repeat_grace_s: float = 0.0):
    """Turn SIGINT/SIGTERM into a flag checked at step boundaries (main thread only); a second signal, say
    during a long evaluation, stops at once (atomic writes keep last.pt whole, the CLI exits 130)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {}
    first_at: list[float] = []

    def handler(signum, _frame):
        # torchrun forwards the terminal's Ctrl-C to workers that already got it from the terminal: there a
        # repeat within a second is that same Ctrl-C, and must not cut short the checkpoint the ranks agreed on.
        if caught and time.monotonic() - first_at[0] >= repeat_grace_s:
            raise KeyboardInterrupt
        if not caught:
            first_at.append(time.monotonic())
            caught.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _hidden_to(hidden, device):
    if hidden is None:
        return None
    if isinstance(hidden, tuple | list):
        return tuple(h.to(device) for h in hidden)
    return hidden.to(device)


# Settings that fix the model's shape, the optimizer's state or the order of the data: a resumed run keeps them.
_FIXED_ON_RESUME = ("model.*", "data.val_fraction", "data.test_fraction", "train.batching", "train.batch_size",
                    "train.seq_length", "train.optimizer")


def _check_resumable(saved: dict, cfg: Config) -> None:
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


def training_config(config: str | Path | None, overrides: list[str], *, data: str | Path | list | None = None,
                    name: str | None = None, run_dir: str | Path | None = None, resume: bool = False,
                    init_from: str | Path | None = None) -> tuple[Config, Path | None]:
    """The config and run folder a `charrnn train` invocation means: the YAML file plus --data/--name/--set,
    or, on --resume, the run folder's own config.yaml plus the same overrides (e.g. a longer max_steps).
    With init_from (fine-tuning) the model section is the source's; a config that sets another is refused."""
    overrides = list(overrides)
    if init_from is not None:
        if resume:
            raise UserError("--init-from starts a new run from another run's weights; --resume continues this "
                            "run: pass one of them")
        overrides.append(f"init_from={json.dumps(str(init_from))}")
    if name is not None:
        overrides.append(f"name={json.dumps(name)}")
    if data is not None:  # a file or folder, or several
        paths = [str(d) for d in data] if isinstance(data, list | tuple) else str(data)
        overrides.append(f"data.path={json.dumps(paths)}")
    if config is None and not (resume and (run_dir or name)):
        raise UserError("pass --config FILE (e.g. --config configs/ihello.yaml), or --resume with --run-dir")
    base = read_yaml(config) if config is not None else {}
    if resume:
        if run_dir is None:
            named = config_from_dict(apply_overrides(base, overrides))
            run_dir = Path(named.log.dir) / named.name
        saved = RunPaths(Path(run_dir)).config
        if not saved.is_file():
            raise UserError(f"cannot resume: {saved} does not exist; train without --resume first")
        base = read_yaml(saved)
    raw = apply_overrides(base, overrides)
    if raw.get("init_from") and not resume:
        raw = finetune.take_source_model(raw)
    cfg = config_from_dict(raw)
    return resolve_data_paths(cfg), Path(run_dir) if run_dir is not None else None


def _rank_rows(hidden, dist: distributed.DistContext):
    """This rank's rows (dimension 1) of a global-batch hidden state."""
    if hidden is None or dist.world_size == 1:
        return hidden
    rows = (hidden[0] if isinstance(hidden, tuple) else hidden).size(1)
    per_rank = rows // dist.world_size
    return select_hidden(hidden, slice(dist.rank * per_rank, (dist.rank + 1) * per_rank))


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


def _flat_hparams(cfg: Config) -> dict:
    flat = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                if section in ("model", "train") and value is not None:
                    flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop eval lines written after the checkpoint (they will be written again), and a half
    line that a kill may have left."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    _write_atomically(path, "".join(line + "\n" for line in kept))


def _write_atomically(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))

