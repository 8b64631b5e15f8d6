"""One training session over a run folder: set-up, the parts of the loop, teardown."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from charrnn.config import Config, config_yaml
from charrnn.console import FileProgress
from charrnn.data.batches import make_batcher
from charrnn.data.cache import EncodedCorpus
from charrnn.data.corpus import corpus_notes, open_corpus, resolve_data_paths
from charrnn.device import emulated_bf16_note, resolve_device, resolve_precision
from charrnn.errors import TrainingFailed, UserError
from charrnn.evaluate import evaluate
from charrnn.memory import check_training_fits
from charrnn.model import CharRNN, detach_hidden, select_hidden
from charrnn.run import status as run_status
from charrnn.run.checkpoint import save_checkpoint
from charrnn.run.folder import RunPaths, check_run_dir, clear_run_dir, prepare_run_dir
from charrnn.safe_files import atomic_write
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.tracking import Tracker
from charrnn.training import autosize, distributed, finetune
from charrnn.training.clock import Stopwatch
from charrnn.training.optimizer import build_optimizer, lr_factor, total_steps_for
from charrnn.training.resume import _restore, _resume_checkpoint
from charrnn.training.signals import Interrupted, _stop_on_signals
from charrnn.training.state import RunResult, StepOutcome, TrainState, _rng_state
from charrnn.training.step import backward_pass
from charrnn.vocab import Vocab


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
        corpus = dist.node_first(lambda: encode_corpus(cfg, vocab, quiet=quiet or not dist.is_main))
        if source is not None:
            vocab = finetune.extended_vocab(Vocab(source["vocab"]), corpus.vocab)
            if vocab != corpus.vocab:
                corpus = dist.node_first(lambda: encode_corpus(cfg, vocab, quiet=True))
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
                run_status.write(paths.root, "running", self.state.step)
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
            run_status.write(self.paths.root, status, step, detail)
            if self.tracker is not None:
                self.tracker.session_status({"finished": "success", "interrupted": "unknown"}.get(status, "failure"))

    def _close_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    return text[:200]


def _rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank other than 0 (rank 0 keeps the run's stream, as a single process)."""
    return (seed * 1_000_003 + rank * 7_919) % (2**63)


def _hidden_to(hidden, device):
    if hidden is None:
        return None
    if isinstance(hidden, tuple | list):
        return tuple(h.to(device) for h in hidden)
    return hidden.to(device)


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


def encode_corpus(cfg: Config, vocab: Vocab | None, quiet: bool) -> EncodedCorpus:
    """The config's corpus, with a progress bar while a large one is encoded and a note on the files of a folder
    skipped as not UTF-8 text (unless quiet)."""
    with FileProgress(enabled=not quiet) as progress:
        corpus = open_corpus(cfg, vocab, progress=progress)
    for note in [] if quiet else corpus_notes(corpus):  # files skipped as not text, links met in a folder
        print(note, file=sys.stderr, flush=True)
    return corpus
