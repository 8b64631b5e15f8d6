"""The training loop: optimizer, LR schedule, clipping, evaluation, checkpoints and logging calls.

`train(config)` is the whole of `charrnn train`; it can be called from a notebook or a test.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn import distributed
from charrnn.checkpoint import RunPaths, atomic_write, load_checkpoint, prepare_run_dir, save_checkpoint
from charrnn.config import Config, apply_overrides, config_from_dict, config_yaml, read_yaml
from charrnn.corpus import default_cache_dir, open_corpus, resolve_data_paths  # noqa: F401  (train's API)
from charrnn.data import make_batcher
from charrnn.device import autocast, resolve_device, resolve_precision
from charrnn.errors import TrainingFailed, UserError
from charrnn.evaluate import Metrics, evaluate
from charrnn.model import CharRNN, detach_hidden, select_hidden
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
                    name: str | None = None, run_dir: str | Path | None = None,
                    resume: bool = False) -> tuple[Config, Path | None]:
    """The config and run folder a `charrnn train` invocation means: the YAML file plus --data/--name/--set,
    or, on --resume, the run folder's own config.yaml plus the same overrides (e.g. a longer max_steps)."""
    overrides = list(overrides)
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
    cfg = config_from_dict(apply_overrides(base, overrides))
    resolve_data_paths(cfg)
    return cfg, Path(run_dir) if run_dir is not None else None


def train(cfg: Config, *, run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          quiet: bool = False, device: str | None = None) -> RunResult:
    """Train a model as the config says, writing checkpoints, metrics and TensorBoard logs into the run folder.

    With resume=True the run folder's own config and last.pt are used (cfg only supplies overrides such
    as a longer max_steps) and the run continues exactly where it stopped.
    """
    dist = distributed.context()
    if cfg.train.batch_size % dist.world_size:
        raise UserError(f"train.batch_size={cfg.train.batch_size} does not split evenly over {dist.world_size} "
                        "processes; use a multiple of the process count so every rank gets the same rows")
    run_root = Path(run_dir) if run_dir is not None else Path(cfg.log.dir) / cfg.name
    checkpoint = None
    if resume:
        paths = prepare_run_dir(run_root, resume=True)
        checkpoint = load_checkpoint(paths.last)
        _check_resumable(checkpoint["config"], cfg)
    dev = resolve_device(device or cfg.train.device)
    dev = dist.device(dev)
    precision = resolve_precision(cfg.train.precision, dev, cfg.model.cell)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    vocab = Vocab(checkpoint["vocab"]) if checkpoint else None
    # One process per node encodes the corpus into the cache; the others then map the same id file.
    corpus = dist.node_first(lambda: open_corpus(cfg, vocab, quiet=quiet or not dist.is_main))
    vocab = corpus.vocab
    splits = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)
    train_ids, val_ids = splits["train"], splits["val"]
    val_name = "val"
    if len(val_ids) < 2:
        val_ids, val_name = train_ids, "train"  # tiny corpora (val_fraction 0): score the training text
    torch.manual_seed(cfg.seed)
    batcher = make_batcher(cfg.train.batching, train_ids, cfg.train.batch_size, cfg.train.seq_length, cfg.seed,
                           dist.rank, dist.world_size)
    model = CharRNN(len(vocab), cfg.model).to(dev)
    optimizer = build_optimizer(cfg, model)
    step, best_val, elapsed_before, hidden = 0, float("inf"), 0.0, None
    window_loss, window_steps = 0.0, 0  # train losses since the last eval, for its metrics line
    if checkpoint:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            batcher.load_state_dict(checkpoint["data"])
            _set_rng_state(checkpoint["rng"], dev)
            step, best_val = int(checkpoint["step"]), float(checkpoint["best_val"])
            elapsed_before = float(checkpoint["elapsed"])
            hidden = _hidden_to(checkpoint.get("hidden"), dev)
            window_loss, window_steps = checkpoint.get("window", (0.0, 0))
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise UserError(f"cannot resume from {paths.last}: it does not fit this run "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); start a new run") from None
    else:
        paths = prepare_run_dir(run_root, overwrite=overwrite) if dist.is_main else RunPaths(run_root)
    dist.barrier()
    # Checkpoints hold the global batch's hidden state (stateful batching); each rank carries its own rows.
    hidden_global = hidden
    hidden = _rank_rows(hidden, dist)
    if dist.is_main:
        # Rewritten on every resume: a kill midway must not leave half a config that breaks the next resume.
        _write_atomically(paths.config, config_yaml(cfg))
        _write_atomically(paths.vocab, vocab.to_json())
        if checkpoint:
            _truncate_metrics(paths.metrics, step)
    ddp_model, compile_note = _maybe_compile(dist.wrap(model), cfg.train.compile, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")  # fp16 gradients need loss scaling
    if checkpoint and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])

    total_steps = total_steps_for(cfg, len(train_ids))
    budget = cfg.train.time_budget
    tracker = Tracker(paths.root, tensorboard=cfg.log.tensorboard, quiet=quiet, enabled=dist.is_main,
                      total_steps=total_steps, time_budget=budget, start_step=step,
                      purge_step=step + 1 if step else None)  # keep what the checkpoint's step logged
    if step == 0:
        tracker.hparams(_flat_hparams(cfg), ["val/loss", "val/bpc", "val/accuracy"])
    if val_name == "train":
        tracker.message("note: the validation split is empty; evaluating on the training text")
    if compile_note:
        tracker.message(compile_note)
    clock = Stopwatch(elapsed_before)
    first_char = vocab.chars[int(train_ids[0])]
    chars_per_step = cfg.train.batch_size * cfg.train.seq_length
    vocab_size = len(vocab)
    last_eval_step = -1
    evals_done = 0
    val_metrics: Metrics | None = None
    if checkpoint and checkpoint.get("val") and checkpoint.get("val_step") == step:
        # Resuming a run whose last step was evaluated (e.g. a finished one): report that eval, do not redo it.
        val_metrics, last_eval_step = Metrics(**checkpoint["val"]), step
    window_start, window_step0 = clock.elapsed(), step
    speed = 0.0

    def progress_now() -> float:
        done = [step / total_steps] if total_steps else []
        if budget:
            done.append(clock.elapsed() / budget)
        return max(done)

    def last_good() -> str:
        return str(paths.last) if paths.last.exists() else "none"

    def state_dict() -> dict:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingFailed(f"the weights are no longer finite at step {step}; nothing was saved "
                                 f"from this step. Last good checkpoint: {last_good()}. Try a lower train.lr")
        return {
            "step": step, "config": cfg.to_dict(), "vocab": vocab.chars, "first_char": first_char,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "data": batcher.state_dict(),
            "hidden": hidden_global, "rng": _rng_state(dev), "scaler": scaler.state_dict(), "best_val": best_val,
            "elapsed": clock.elapsed(), "window": (window_loss, window_steps),
            "val": val_metrics.to_dict() if val_metrics else None, "val_step": last_eval_step,
        }

    def save_last() -> None:
        tracker.flush()  # the event files must not lag behind the checkpoint that a crash resumes from
        save_checkpoint(state_dict(), paths.last)

    def run_eval(train_loss: float) -> None:
        nonlocal best_val, last_eval_step, val_metrics, evals_done
        val_metrics = evaluate(model, val_ids, batch_size=64, device=dev, precision=precision,
                               max_chars=cfg.train.eval_max_chars)
        last_eval_step = step
        evals_done += 1
        if not math.isfinite(val_metrics.loss):
            raise TrainingFailed(f"validation loss is {val_metrics.loss} at step {step}; "
                                 f"last good checkpoint: {last_good()}")
        record = {"step": step, "train_loss": train_loss, "val_loss": val_metrics.loss, "val_bpc": val_metrics.bpc,
                  "val_accuracy": val_metrics.accuracy, "lr": optimizer.param_groups[0]["lr"],
                  "chars_per_sec": speed, "elapsed_s": round(clock.elapsed(), 3)}
        tracker.eval_record(record)
        if cfg.log.histogram_every and evals_done % cfg.log.histogram_every == 0:
            tracker.histograms(step, {f"weights/{n}": p for n, p in model.named_parameters()})
            tracker.histograms(step, {f"grads/{n}": p.grad for n, p in model.named_parameters()
                                      if p.grad is not None})
        if val_metrics.loss < best_val:
            best_val = val_metrics.loss
            if dist.is_main:
                save_checkpoint(state_dict(), paths.best)

    def out_of_time() -> bool:
        return budget is not None and clock.elapsed() >= budget

    def stop_reason(time_up: bool) -> str | None:
        if total_steps is not None and step >= total_steps:
            return "max_steps" if cfg.train.max_steps == total_steps else "max_epochs"
        return "time_budget" if time_up else None

    _, (time_up,) = dist.step_sync(torch.zeros(()), out_of_time())  # agreed by all ranks, like every stop
    stopped_by = stop_reason(time_up)
    ddp_model.train()
    try:
        with _stop_on_signals(repeat_grace_s=1.0 if dist.world_size > 1 else 0.0) as caught:
            while stopped_by is None:
                if batcher.stateful and batcher.starts_new_epoch:
                    hidden = None
                inputs, targets = batcher.next_batch()
                inputs, targets = inputs.to(dev, non_blocking=True), targets.to(dev, non_blocking=True)
                lr = cfg.train.lr * lr_factor(cfg, step, progress_now())
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast(dev, precision):
                    logits, new_hidden = ddp_model(inputs, hidden)
                loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), targets.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                # The global batch's loss, and whether any rank caught a signal or ran out of time.
                loss_value, (signalled, time_up) = dist.step_sync(loss, bool(caught), out_of_time())
                bad = None if math.isfinite(loss_value) else f"training loss became {loss_value}"
                if bad is None and not scaler.is_enabled() and not math.isfinite(grad_norm):
                    bad = f"gradient norm became {float(grad_norm)}"  # it would poison the weights (fp16 skips it)
                if bad:
                    raise TrainingFailed(
                        f"{bad} at step {step + 1}; nothing was saved from this step. "
                        f"Last good checkpoint: {last_good()}. Try a lower train.lr or train.grad_clip"
                    )
                scaler.step(optimizer)
                scaler.update()
                step += 1
                hidden = detach_hidden(new_hidden) if batcher.stateful else None
                window_loss += loss_value
                window_steps += 1
                now = clock.elapsed()
                if now > window_start:
                    speed = (step - window_step0) * chars_per_step * dist.world_size / (now - window_start)
                tracker.scalars(step, {"train/loss": loss_value, "train/lr": lr,
                                       "train/grad_norm": float(grad_norm), "train/chars_per_sec": speed})
                tracker.progress(step, now, loss_value, speed)
                stopped_by = stop_reason(time_up)
                stop_now = signalled or (dist.world_size == 1 and bool(caught))  # alone, a late signal counts now
                checkpoint_due = step % cfg.train.checkpoint_every == 0 or stopped_by or stop_now
                if checkpoint_due or step % cfg.train.eval_every == 0:  # a collective: same steps on all ranks
                    hidden_global = dist.gather_rows(hidden)
                if step % cfg.train.eval_every == 0 or stopped_by:
                    run_eval(window_loss / window_steps)
                    window_loss, window_steps, window_start, window_step0 = 0.0, 0, clock.elapsed(), step
                if cfg.log.sample_every and step % cfg.log.sample_every == 0 and dist.is_main:
                    _log_sample(tracker, model, vocab, first_char, cfg, step, dev)
                if checkpoint_due and dist.is_main:
                    save_last()
                if stop_now:
                    raise Interrupted(caught[0] if caught else signal.SIGTERM, step, paths.root)  # maybe another rank
        if last_eval_step != step:  # resumed at the end, or nothing to do: report the current model
            run_eval(float("nan"))
        final_sample_due = cfg.log.sample_every and step % cfg.log.sample_every != 0  # else the loop logged it
        if final_sample_due and dist.is_main and cfg.log.tensorboard:
            _log_sample(tracker, model, vocab, first_char, cfg, step, dev)
        if model.embedding is not None:
            tracker.embedding(step, model.embedding.weight, vocab.chars)
    finally:
        tracker.close()
    return RunResult(paths.root, step, clock.elapsed(), speed, val_metrics, best_val, stopped_by or "max_steps",
                     dist.is_main)


def _rank_rows(hidden, dist: distributed.DistContext):
    """This rank's rows (dimension 1) of a global-batch hidden state."""
    if hidden is None or dist.world_size == 1:
        return hidden
    rows = (hidden[0] if isinstance(hidden, tuple) else hidden).size(1)
    per_rank = rows // dist.world_size
    return select_hidden(hidden, slice(dist.rank * per_rank, (dist.rank + 1) * per_rank))


def _maybe_compile(model: torch.nn.Module, enabled: bool, device: torch.device) -> tuple:
    """(the training forward, a note for the console): torch.compile where it can pay off (CUDA) and a
    one-line explanation where it does not."""
    if not enabled:
        return model, None
    if device.type != "cuda":
        # Measured on a 2-core AVX2 CPU, 2x128 LSTM, batch 32x64: eager 63 ms/step, compiled 114 ms/step after
        # 23 s of compiling (nn.LSTM/GRU already run as one oneDNN kernel; compiling unrolls them).
        why = ("torch.compile makes recurrent models slower on CPU (measured 114 vs 63 ms/step, after ~20 s "
               "of compiling)" if device.type == "cpu" else "it is used on CUDA only")
        return model, f"note: train.compile ignored on {device.type.upper()}: {why}"
    return torch.compile(model), "note: train.compile: compiling the model with torch.compile (first steps are slow)"


def _log_sample(tracker: Tracker, model: CharRNN, vocab: Vocab, prime: str, cfg: Config, step: int,
                device: torch.device) -> None:
    text = sample_text(model, vocab, prime=prime, length=cfg.log.sample_length, opts=SamplingOptions(),
                       seed=cfg.seed + step, device=device)[0]
    tracker.text(step, "samples", text)


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
    """On resume, drop eval lines written after the checkpoint (they will be written again)."""
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


def load_model(checkpoint: dict, device: torch.device | str = "cpu") -> tuple[CharRNN, Vocab, Config]:
    """Rebuild the model, vocabulary and config stored in a checkpoint."""
    try:
        cfg = config_from_dict(checkpoint["config"])
        vocab = Vocab(checkpoint["vocab"])
        model = CharRNN(len(vocab), cfg.model)
        model.load_state_dict(checkpoint["model"])
    except (UserError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"checkpoint does not match its own config ({str(exc).splitlines()[0][:160]}); "
                        "it was written by an incompatible charrnn") from None
    return model.to(device).eval(), vocab, cfg

