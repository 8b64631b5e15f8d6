"""`model.hidden_size: auto`: size the model to this machine's measured training speed and the time budget.

A time budget means "the best model this machine can train in this time", and the width that gives it depends
on the speed: a 2x160 LSTM wins 100 s on a 2-core AVX2 CPU and overfits on a CPU with AMX bf16, which trains it
twice as fast. So before training, `probe` times a few real training steps of each candidate width (the run's
model, batches, optimizer, precision and threads) and `choose` takes the widest width with which the run
still sees enough characters per parameter, and no more parameters than the training text can hold (a small text
learnt by heart). `resolve_auto` does both and fills in every `auto` of the config.

The rule and its numbers, measured on tinyshakespeare (docs/choosing-the-width.md): the best width of a
budget is the one at which the run sees about 5 to 10 characters per parameter; 20 or more overfits, 2 or fewer
underfits. "The widest width with at least 5 characters per parameter" picks the measured best in every case
(100 s on AVX2 fp32 at 2 threads, on AMX bf16 at 1 and 2 threads; 600 s on both), and a faster machine or a
longer budget can never pick a smaller width. Dropout and learning rate follow the width as in those runs.
"""

from __future__ import annotations

import dataclasses
import io
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from charrnn.config import Config, is_auto
from charrnn.data.batches import make_batcher
from charrnn.evaluate import evaluate
from charrnn.memory import parameter_count
from charrnn.model import CharRNN
from charrnn.training.distributed import DistContext
from charrnn.training.optimizer import step_limit_key
from charrnn.training.recipe import PASSES_KEYS, with_width
from charrnn.training.step import NonFiniteStep, TrainingStep, build_step
from charrnn.training.validation import eval_char_cap

# Widths tried, narrowest first; probing stops at the first that falls short of the target (a wider one is
# never faster), so a CPU probes a handful and a GPU goes on to the wide ones.
CANDIDATE_WIDTHS = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024, 1536, 2048)
# Characters the run sees per parameter: the measured best runs saw 5 to 10 (docs/choosing-the-width.md).
TARGET_CHARS_PER_PARAM = 5.0
# ... and no more parameters than this many per character of the training text, however many characters the
# budget buys: a small text is learnt by heart whatever the dropout. Measured at 100 s (docs/choosing-the-width.md):
# on 300 KB of Python 2x192 (2.3 parameters per training character) was best and 2x224 (3.1) and 2x256 (4.0)
# scored 0.06 worse; on 100 KB of Shakespeare 2x224 (9.2) scored 0.02 worse than 2x128 (3.0).
MAX_PARAMS_PER_TRAIN_CHAR = 3.0
PROBE_SHARE = 0.05  # probing may take at most this fraction of the time budget
WARMUP_STEPS = 2  # untimed: the first steps of a new shape build kernels (oneDNN primitives, cuDNN plans)
TIMED_STEPS = 6  # per width at least; their typical time (typical_step) gives its speed
# ... and more, up to this many, while the width's timed steps take less than its even part of the probe's share
# (the share over len(CANDIDATE_WIDTHS): 0.3 s a width at 100 s, 1.9 s at 600 s), so a long run's speed is not
# read off a few steps that a passing stall slowed.
MAX_TIMED_STEPS = 32
EVAL_PROBE_CHARS = 4096  # an evaluation of this many characters, timed, gives a width's scoring speed
SAMPLE_PROBE_CHARS = 16  # characters stepped one at a time, timed, give its sampling speed



@dataclasses.dataclass(frozen=True)
class Measurement:
    """One candidate width as probed: training speed in characters per second and its parameter count."""

    width: int
    chars_per_sec: float
    params: int


@dataclasses.dataclass(frozen=True)
class Choice:
    """The width `choose` picked and what it predicts for the run."""

    width: int
    chars_per_sec: float
    chars: float  # characters the run will train on
    chars_per_param: float


@dataclasses.dataclass
class ProbeResult:
    measured: list[Measurement]
    seconds: float  # wall time the probe took (to be taken off the budget)
    steps: int  # training steps taken, timed or not
    capped: bool = False  # it stopped before a width with more parameters than max_params


class Resolution(NamedTuple):
    cfg: Config  # every auto replaced by a number
    message: str | None  # the choice and its reason, for the console; None when nothing was auto
    seconds: float  # spent probing: the run's clock starts with it, so it counts inside the budget
    chars_per_sec: float | None = None  # the speed the probe predicts for the run at the chosen width


def predicted_chars(m: Measurement, seconds: float, char_limit: float | None = None) -> float:
    """Characters a run at this speed trains on in `seconds`, or fewer where max_steps/max_epochs stop it first."""
    chars = m.chars_per_sec * max(seconds, 0.0)
    return min(chars, char_limit) if char_limit is not None else chars


def choose(measured: Sequence[Measurement], seconds: float, char_limit: float | None = None,
           target: float | None = None, max_params: float | None = None) -> Choice:
    """The widest measured width with at most `max_params` parameters at which the run sees at least `target`
    characters per parameter (the narrowest when none does). Pure: more speed at any width, or more seconds,
    never picks a smaller width."""
    if not measured:
        raise ValueError("choose needs at least one measured width")
    target = TARGET_CHARS_PER_PARAM if target is None else target
    ordered = sorted(measured, key=lambda m: m.width)

    def per_param(m: Measurement) -> float:
        return predicted_chars(m, seconds, char_limit) / m.params

    enough = [m for m in ordered if per_param(m) >= target]
    fits = [m for m in enough if max_params is None or m.params <= max_params]
    pick = fits[-1] if fits else ordered[0]
    return Choice(pick.width, pick.chars_per_sec, predicted_chars(pick, seconds, char_limit), per_param(pick))


def max_params_for(train_chars: int) -> float:
    """The most parameters a model of this training text may have (MAX_PARAMS_PER_TRAIN_CHAR per character)."""
    return MAX_PARAMS_PER_TRAIN_CHAR * train_chars


def probe(cfg: Config, train_ids: np.ndarray, vocab_size: int, device: torch.device, precision: str,
          seconds: float, *, char_limit: float | None = None, dist: DistContext | None = None,
          candidates: Sequence[int] | None = None, eval_chars: int = 0, max_params: float | None = None,
          clock: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Time the run's own training step (training/step.py: DDP's all-reduce and the per-step sync included) for
    each candidate width on the run's batches, narrowest first, until a width falls short of the target, the next
    has more than `max_params` parameters (the narrowest is timed whatever its size) or PROBE_SHARE of `seconds`
    is spent (after the first step); then what the loop does besides training steps (evaluations of the
    eval_chars characters of the scored text, or of the sample train.eval_max_chars takes, checkpoints, samples)
    is timed once per width and spread over its steps. RNG states are restored, so the run trains as if no probe
    had happened."""
    dist = dist or DistContext()
    timer = _Timer(clock, PROBE_SHARE * seconds)
    measured: list[Measurement] = []
    last_step_s, last_params, capped = 0.0, 0, False
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for width in sorted(CANDIDATE_WIDTHS if candidates is None else candidates):
            # Timed with the dropout it would train with if picked (see chars_if_picked).
            params = parameter_count(vocab_size, with_width(cfg, width).model)
            capped = bool(measured) and max_params is not None and params > max_params
            if capped:
                break  # too many parameters for this text, and so is every wider width
            wcfg = with_width(cfg, width, chars_if_picked(params, char_limit), len(train_ids))
            model = CharRNN(vocab_size, wcfg.model).to(device)
            # A width whose probe would overrun the share of the budget is not tried (its steps cost about
            # the parameter ratio times the last width's); one that overruns it midway counts if it was timed.
            expected = (WARMUP_STEPS + TIMED_STEPS + 1) * last_step_s * params / max(last_params, 1)
            out_of_time = dist.any_rank(timer.would_pass(expected))
            times: list[float] = []
            if not out_of_time:
                step, _ = build_step(wcfg, model, precision, dist, compile=False)
                times, out_of_time = _time_steps(model, step, wcfg, train_ids, dist, timer)
            speed = cfg.train.batch_size // dist.world_size * cfg.train.seq_length / typical_step(times) \
                if times else 0.0
            # Every rank takes the slowest rank's speed and stops when any rank stops: all choose alike.
            minus_slowest, stop = dist.max_over_ranks(-speed, float(out_of_time))
            if minus_slowest < 0:
                step_s = typical_step(times)
                overhead = _loop_overhead(wcfg, step, train_ids, eval_chars, clock)
                (overhead,) = dist.max_over_ranks(overhead)
                effective = -minus_slowest * dist.world_size * step_s / (step_s + overhead)
                measured.append(Measurement(width, effective, params))
                last_step_s, last_params = step_s, params
            if stop or minus_slowest == 0:
                break
            # Short of the target even with the whole budget: wider widths (slower) will be too.
            if predicted_chars(measured[-1], seconds, char_limit) / params < TARGET_CHARS_PER_PARAM:
                break
    (elapsed,) = dist.max_over_ranks(clock() - timer.start)
    return ProbeResult(measured, elapsed, timer.steps, capped)


def typical_step(times: Sequence[float]) -> float:
    """The seconds a step takes on average, a stall left out: the mean of the steps under twice the median. The run's
    speed is a mean over thousands of steps, jitter included (the mean is 4-5% over the median on a 2-core Xeon);
    a step that a passing stall slowed to several times the others is not what the run will see."""
    usual = [t for t in times if t <= 2 * statistics.median(times)]
    return statistics.fmean(usual)


def chars_if_picked(params: int, char_limit: float | None = None) -> float:
    """The characters a width that `choose` picks at the boundary trains on: about TARGET_CHARS_PER_PARAM per
    parameter (or char_limit, where max_steps/max_epochs stop it first). The probe times each width with the
    dropout (and moving average) the passes over the text these give, since dropout costs time (a 2x128-192 LSTM
    steps 15-25% slower with it on a 2-core Xeon): that is what the pick trains with wherever the speed decides
    between it and the next wider width. A pick that passes over the text more often, and so gets dropout where it
    was timed without, is timed again (resolve_auto)."""
    chars = TARGET_CHARS_PER_PARAM * params
    return min(chars, char_limit) if char_limit is not None else chars


class _Timer:
    """The probe's clock and its share of the budget, counted from after the first training step (which also
    sets up kernels and thread pools: the run would pay for that anyway); per_width_s: each candidate width's even
    part of it, how long its timed steps may go on past TIMED_STEPS."""

    def __init__(self, clock: Callable[[], float], share_s: float):
        self.clock, self.share_s, self.start = clock, share_s, clock()
        self.per_width_s = share_s / len(CANDIDATE_WIDTHS)
        self.deadline, self.steps = math.inf, 0

    def would_pass(self, seconds: float) -> bool:
        return self.clock() + seconds > self.deadline

    def stepped(self) -> None:
        self.steps += 1
        if self.steps == 1:
            self.deadline = self.clock() + self.share_s


def _time_steps(model: CharRNN, step: TrainingStep, cfg: Config, train_ids: np.ndarray, dist: DistContext,
                timer: _Timer) -> tuple[list[float], bool]:
    """The seconds of each timed step of one width (after WARMUP_STEPS): TIMED_STEPS, then more while they take
    less than the width's part of the share (and one more fits in it); and whether the probe ran out of time. The
    ranks agree before every step, so they all take the same steps."""
    t = cfg.train
    batcher = make_batcher(t.batching, train_ids, t.batch_size, t.seq_length, cfg.seed, dist.rank, dist.world_size)
    model.train()
    hidden, times = None, []
    for i in range(WARMUP_STEPS + MAX_TIMED_STEPS):
        if i < WARMUP_STEPS + TIMED_STEPS:
            if dist.any_rank(timer.would_pass(0.0)):
                return times, True
        else:  # enough to go on: more only where every rank has time for them (one agreement a step, as above)
            median = statistics.median(times)
            if dist.any_rank(sum(times) + median > timer.per_width_s or timer.would_pass(2 * median)):
                break
        began = timer.clock()
        hidden = _train_step(model, step, batcher, hidden, t.lr)
        timer.stepped()
        if i >= WARMUP_STEPS:
            times.append(timer.clock() - began)
    return times, False


def _train_step(model: CharRNN, step: TrainingStep, batcher, hidden, lr: float):
    """One step of the run's training step; returns the hidden state to carry (a step whose loss is not finite
    is timed all the same: the probe only measures speed)."""
    try:
        return step(batcher, hidden, lr)[1]
    except NonFiniteStep:
        return None


def _loop_overhead(cfg: Config, step: TrainingStep, ids: np.ndarray, eval_chars: int,
                   clock: Callable[[], float]) -> float:
    """Seconds per training step that the loop spends besides training steps at this width: its evaluations
    (eval_chars characters, or the sample eval_char_cap takes of them, every train.eval_every steps of this
    width's config, twice under train.ema), checkpoints (last.pt every train.checkpoint_every steps, best.pt at
    most once an evaluation) and TensorBoard samples (log.sample_length characters every log.sample_every steps),
    each timed once here on a small piece."""
    t, log, model = cfg.train, cfg.log, step.model
    began = clock()
    piece = min(len(ids) - 1, EVAL_PROBE_CHARS)
    evaluate(model, ids[: piece + 1], batch_size=64, device=step.device)
    scored = 2 if step.average is not None else 1  # under train.ema an evaluation scores the average and the weights
    cap = eval_char_cap(cfg)  # of this width's config: it may evaluate more often, on fewer characters each time
    eval_s = (clock() - began) * (eval_chars if cap is None else min(eval_chars, cap)) / max(piece, 1) * scored
    began = clock()
    torch.save(step.state_dicts(), io.BytesIO())  # what a checkpoint holds of the step, the average included
    save_s = clock() - began
    sample_s = 0.0
    if log.tensorboard and log.sample_every:
        began = clock()
        model.eval()
        with torch.no_grad():  # sampling feeds one character at a time, head included
            x, hidden = torch.zeros(1, 1, dtype=torch.long, device=step.device), None
            for _ in range(SAMPLE_PROBE_CHARS):
                _, hidden = model(x, hidden)
        sample_s = (clock() - began) * log.sample_length / SAMPLE_PROBE_CHARS / log.sample_every
    return eval_s / t.eval_every + save_s * (1 / t.checkpoint_every + 1 / t.eval_every) + sample_s


def _about(x: float) -> str:
    """61234 -> '61k', 6.1e6 -> '6.1M', 0.354 -> '0.35': two significant digits."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{float(f'{x / scale:.2g}'):g}{suffix}"
    return f"{float(f'{x:.2g}'):g}"


def resolve_auto(cfg: Config, train_ids: np.ndarray, vocab_size: int, device: torch.device, precision: str, *,
                 step_limit: int | None = None, dist: DistContext | None = None,
                 candidates: Sequence[int] | None = None, eval_chars: int = 0) -> Resolution:
    """Replace every `auto` in the config: hidden_size by probing this machine (see `probe` and `choose`),
    embedding_dim, dropout and lr from the width, dropout, batching, ema, weight decay and eval_every from the
    passes over the training text.
    Call it with the run's corpus, device, precision and threads set, before the model is built; the probe's
    seconds count inside train.time_budget. eval_chars: characters of the text evaluations score (the val split)."""
    m, t = cfg.model, cfg.train
    char_limit = step_limit * t.batch_size * t.seq_length if step_limit is not None else None
    if not is_auto(m.hidden_size):
        if not (is_auto(m.embedding_dim) or is_auto(m.dropout) or is_auto(t.lr) or _follows_passes(cfg)):
            return Resolution(cfg, None, 0.0)
        if (is_auto(m.dropout) or _follows_passes(cfg)) and t.time_budget is not None:
            # the passes the budget buys need this width's speed
            candidates = [m.hidden_size]
        else:
            resolved = with_width(cfg, m.hidden_size, char_limit, len(train_ids))
            return Resolution(resolved, f"auto: {_followers(cfg, resolved)} for hidden_size={m.hidden_size}", 0.0)
    budget = float(t.time_budget)  # the config refuses hidden_size: auto without one
    max_params = max_params_for(len(train_ids)) if is_auto(m.hidden_size) else None
    result = probe(cfg, train_ids, vocab_size, device, precision, budget, char_limit=char_limit, dist=dist,
                   candidates=candidates, eval_chars=eval_chars, max_params=max_params)
    if not result.measured:  # not one width could be timed within the share of the budget: the narrowest it is
        width = min(CANDIDATE_WIDTHS if candidates is None else candidates)
        note = (f"note: {_auto_name(cfg)} could not time even {width} wide in {PROBE_SHARE:.0%} of the {budget:g} s "
                f"budget (probed 0 widths in {result.seconds:.1f} s): this machine is busy or slow, so the run trains "
                f"the narrowest, hidden_size={width}, as for a few passes over the text (no dropout for many passes, "
                "stateful batches, no moving average); give it a longer train.time_budget, stop what else is running "
                "(or set train.threads), or set the auto values in the config")
        return Resolution(with_width(cfg, width), note, result.seconds)
    seconds = result.seconds
    pick = choose(result.measured, budget - seconds, char_limit, max_params=max_params)
    capped = result.capped and pick.width == result.measured[-1].width  # the next width was too big for the text
    resolved = with_width(cfg, pick.width, pick.chars, len(train_ids))
    params = next(x.params for x in result.measured if x.width == pick.width)
    timed = with_width(cfg, pick.width, chars_if_picked(params, char_limit), len(train_ids))
    if _costs(timed) != _costs(resolved):  # it passes over the text more often than a pick at the target:
        again = probe(resolved, train_ids, vocab_size, device, precision, budget, char_limit=char_limit, dist=dist,
                      candidates=[pick.width], eval_chars=eval_chars)  # its speed with the dropout it trains with
        seconds += again.seconds
        if again.measured:  # what follows the passes follows this speed, the one the auto: line states
            pick = choose(again.measured, budget - seconds, char_limit)
            resolved = with_width(cfg, pick.width, pick.chars, len(train_ids))
    passes = pick.chars / len(train_ids)
    size = (f"at most {_about(max_params)} parameters for {_about(len(train_ids))} chars of training text; "
            if capped and pick.chars_per_param >= TARGET_CHARS_PER_PARAM else "")
    limited = step_limit is not None and pick.chars >= char_limit  # the step limit ends the run before the budget
    until = f"until train.{step_limit_key(cfg, step_limit)}" if limited else "in the budget"
    reason = (f"≈{_about(pick.chars_per_sec)} chars/s here, ≈{_about(pick.chars)} chars {until}, "
              f"{_about(pick.chars_per_param)} chars/parameter, {_about(passes)} passes over the training text; "
              f"{size}probed {len(result.measured)} width{'s' if len(result.measured) != 1 else ''} "
              f"in {seconds:.1f} s")
    followers = _followers(cfg, resolved)
    if is_auto(m.hidden_size):
        message = f"auto: hidden_size={pick.width}{', ' + followers if followers else ''} ({reason})"
    else:
        message = f"auto: {followers} for hidden_size={m.hidden_size} ({reason})"
    return Resolution(resolved, message, seconds, pick.chars_per_sec)



def _follows_passes(cfg: Config) -> bool:
    """Whether a train setting is auto that follows the passes over the text (batching, ema, weight decay, the
    steps between evaluations)."""
    return any(is_auto(getattr(cfg.train, key)) for key in PASSES_KEYS)


def _costs(cfg: Config) -> tuple[bool, bool]:
    """What makes a step slower besides its width: dropout, and a moving average to update."""
    return cfg.model.dropout > 0, cfg.train.ema is not None


def _auto_name(cfg: Config) -> str:
    """'hidden_size: auto': the first setting left to auto, for the messages that say what resolved."""
    named = [("hidden_size", cfg.model.hidden_size), ("dropout", cfg.model.dropout)]
    named += [(key, getattr(cfg.train, key)) for key in PASSES_KEYS]
    return next((f"{key}: auto" for key, value in named if is_auto(value)), "auto")


def _followers(before: Config, after: Config) -> str:
    """'dropout=0.1, lr=0.006': the settings that followed the width."""
    parts = []
    if is_auto(before.model.embedding_dim) and not before.model.tie_weights:
        parts.append(f"embedding_dim={after.model.embedding_dim}")
    if is_auto(before.model.dropout):
        parts.append(f"dropout={after.model.dropout:g}")
    if is_auto(before.train.lr):
        parts.append(f"lr={after.train.lr:g}")
    if is_auto(before.train.weight_decay):
        parts.append(f"weight_decay={after.train.weight_decay:g}")
    if is_auto(before.train.batching):
        parts.append(f"batching={after.train.batching}")
    if is_auto(before.train.ema):
        parts.append(f"ema={after.train.ema:g}" if after.train.ema is not None else "ema=off")
    if is_auto(before.train.eval_every):
        parts.append(f"eval_every={after.train.eval_every}")
    return ", ".join(parts)


_AUTO_KEYS = (("model", "hidden_size"), ("model", "embedding_dim"), ("model", "dropout"), ("train", "lr"),
              ("train", "batching"), ("train", "ema"), ("train", "weight_decay"), ("train", "eval_every"))
# ... of which these resolve to null where they are off: a run's null is its choice, not a missing value.
_OFF_IS_NULL = (("train", "ema"),)


def keep_resolved(cfg: Config, saved: dict) -> Config:
    """On resume: each `auto` takes the value the run resolved when it started (its checkpoint's config), so
    `--set model.hidden_size=auto` on --resume means "as before" rather than a different model."""
    if not isinstance(saved, dict):
        return cfg  # a foreign config: the resume check that follows refuses it
    for section, key in _AUTO_KEYS:
        stored = saved.get(section) if isinstance(saved.get(section), dict) else {}
        value = stored.get(key)
        chosen = key in stored if (section, key) in _OFF_IS_NULL else value is not None
        if is_auto(getattr(getattr(cfg, section), key)) and chosen and not is_auto(value):
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{key: value})})
    return cfg

