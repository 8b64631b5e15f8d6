"""A run that is killed, interrupted or fails can be continued, and continues exactly.

The kill tests fork the test process (torch is already imported, so a child costs milliseconds) and the
child SIGKILLs itself at a chosen point: after a step, right after last.pt is written, or halfway through
writing last.pt. What is left on disk is then resumed, and the per-step train losses in the TensorBoard
event files, metrics.jsonl and the final weights and optimizer state must equal an uninterrupted run's
bit for bit (CPU, fixed seed).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_config
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

import charrnn.training.checkpointing as checkpointing_module
import charrnn.training.setup as setup_code
import charrnn.training.trainer as trainer_module
import charrnn.training.validation as validation_module
from charrnn.errors import Interrupted, TrainingFailed
from charrnn.run import status as run_status
from charrnn.run.checkpoint import load_checkpoint
from charrnn.tracking import Tracker
from charrnn.training.loop import train

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 3
STEPS = 24


def resume_config(tmp_path: Path, batching: str, ema: float | None = None):
    """Two-layer GRU with dropout (uses the torch RNG), a cosine schedule with warmup, evals that do not
    line up with checkpoints, a validation split and text samples: everything a resume must restore."""
    return tiny_config(
        tmp_path, TEXT,
        data={"val_fraction": 0.1},
        model={"cell": "gru", "encoding": "embedding", "embedding_dim": 8, "num_layers": 2, "dropout": 0.2},
        train={"batching": batching, "batch_size": 3, "seq_length": 8, "max_steps": STEPS, "optimizer": "adamw",
               "weight_decay": 0.01, "lr": 0.01, "lr_schedule": "cosine", "warmup_steps": 3,
               "eval_every": 4, "checkpoint_every": 5, "ema": ema},
        log={"tensorboard": True, "sample_every": 6, "sample_length": 8},
    )


# -- reading back what a run left -------------------------------------------------------------------------

def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train/loss) as TensorBoard shows them: event files in the order they were written, each
    session's SessionLog.START purging the steps at and after its purge step. A list, not a dict by step:
    a step that is logged twice (say, by a killed session and again after the resume) shows up twice."""
    files = []
    for path in run_dir.glob("events.out.tfevents.*"):
        events = list(EventFileLoader(str(path)).Load())
        files.append((events[0].wall_time, events))
    losses: list[tuple[int, float]] = []
    for _, events in sorted(files, key=lambda f: f[0]):
        for event in events:
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                losses = [(s, v) for s, v in losses if s < event.step]
            for value in event.summary.value:
                if value.tag == "train/loss":
                    number = value.simple_value if value.HasField("simple_value") else \
                        tensor_util.make_ndarray(value.tensor).item()
                    losses.append((event.step, number))
    return losses


def metrics_lines(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the fields that measure wall-clock time."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in ("chars_per_sec", "elapsed_s")} for line in lines]


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    assert a.keys() == b.keys()
    assert a.get("scored") == b.get("scored")  # train.ema: which of the two "model" is
    for weights in ("model", "trained_model", "average_model"):  # under train.ema: the weights and their average
        assert a.get(weights, {}).keys() == b.get(weights, {}).keys()
        for key in a.get(weights, {}):
            assert torch.equal(a[weights][key], b[weights][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert a["data"] == b["data"]
    assert a["best_val"] == b["best_val"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def assert_same_run(run: Path, reference: Path) -> None:
    losses, expected = train_losses(run), train_losses(reference)
    assert [step for step, _ in expected] == list(range(1, STEPS + 1))
    assert losses == expected  # every step present once, in order, bitwise equal (as logged, float32)
    assert metrics_lines(run) == metrics_lines(reference)
    for name in ("last.pt", "best.pt"):
        a, b = run / "checkpoints" / name, reference / "checkpoints" / name
        assert_same_state(load_checkpoint(a), load_checkpoint(b))


# -- killing a run from inside -----------------------------------------------------------------------------

def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(kill: str, at: int) -> None:
    """In the child: SIGKILL this process at a point of the training loop."""
    if kill == "after_step":  # the step's update is done; its eval, sample and checkpoint are not
        scalars = Tracker.scalars

        def scalars_then_die(self, step, values):
            scalars(self, step, values)
            if step == at and "train/loss" in values:
                _die()

        Tracker.scalars = scalars_then_die
    elif kill == "after_checkpoint":  # last.pt of this step is complete
        save = checkpointing_module.save_checkpoint

        def save_then_die(state, path):
            save(state, path)
            if state["step"] == at and Path(path).name == "last.pt":
                _die()

        checkpointing_module.save_checkpoint = save_then_die
    elif kill == "mid_write":  # half of last.pt's bytes are in the temporary file
        real_save = torch.save

        def half_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("step") == at and ".last.pt.tmp" in getattr(f, "name", ""):
                buffer = io.BytesIO()
                real_save(obj, buffer)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                _die()
            return real_save(obj, f, *args, **kwargs)

        torch.save = half_save


def train_until_killed(cfg, run_dir: Path, *, resume: bool, kill: str, at: int, timeout: float = 60.0) -> None:
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            _arm(kill, at)
            train(cfg, run_dir=run_dir, resume=resume, quiet=True)
            code = 3  # finished without being killed
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child training run did not finish in {timeout} s")
        time.sleep(0.02)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child exit status {status}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child")
@pytest.mark.parametrize("batching", ["random", "stateful"])
def test_sigkilled_run_resumes_bitwise_identical(tmp_path, batching):
    cfg = resume_config(tmp_path, batching)
    reference = tmp_path / "reference"
    train(cfg, run_dir=reference, quiet=True)

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.pt"
    train_until_killed(cfg, run, resume=False, kill="after_step", at=7)
    assert load_checkpoint(last)["step"] == 5
    train_until_killed(cfg, run, resume=True, kill="after_checkpoint", at=15)
    assert load_checkpoint(last)["step"] == 15
    train_until_killed(cfg, run, resume=True, kill="mid_write", at=20)
    assert load_checkpoint(last)["step"] == 15  # the half-written file never replaced last.pt
    assert list((run / "checkpoints").glob(".last.pt.tmp-*"))  # the kill left its temporary file behind
    result = train(cfg, run_dir=run, resume=True, quiet=True)

    assert result.step == STEPS
    assert not list((run / "checkpoints").glob(".*.tmp-*"))  # resuming cleared the debris
    assert_same_run(run, reference)


@pytest.mark.parametrize(("batching", "ema"), [("random", None), ("stateful", None), ("stateful", 0.9)])
def test_interrupt_between_checkpoints_saves_and_resumes_exactly(tmp_path, batching, ema):
    """SIGINT/SIGTERM (here raised from inside step 9) save last.pt at that step, not at a checkpoint_every
    boundary, and the resumed run equals the uninterrupted one (with train.ema: the weights and their average)."""
    cfg = resume_config(tmp_path, batching, ema)
    reference = tmp_path / "reference"
    train(cfg, run_dir=reference, quiet=True)

    scalars = Tracker.scalars

    def scalars_then_signal(self, step, values):
        scalars(self, step, values)
        if step == 9 and "train/loss" in values:
            os.kill(os.getpid(), signal.SIGTERM)

    run = tmp_path / "interrupted"
    Tracker.scalars = scalars_then_signal
    try:
        with pytest.raises(Interrupted) as info:
            train(cfg, run_dir=run, quiet=True)
    finally:
        Tracker.scalars = scalars
    assert (info.value.step, info.value.exit_code) == (9, 128 + signal.SIGTERM)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 9
    train(cfg, run_dir=run, resume=True, quiet=True)
    assert_same_run(run, reference)


def test_fp16_loss_scaler_state_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """The GradScaler's scale and growth tracker survive a resume (fp16 forced on CPU autocast)."""
    monkeypatch.setattr(setup_code, "resolve_precision", lambda precision, device, cell="lstm": "fp16")
    cfg = tiny_config(tmp_path, TEXT, model={"cell": "gru"}, train={"max_steps": 12, "checkpoint_every": 5})
    straight = train(cfg, run_dir=tmp_path / "straight", quiet=True)
    first_part = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=5))
    train(first_part, run_dir=tmp_path / "resumed", quiet=True)
    resumed = train(cfg, run_dir=tmp_path / "resumed", resume=True, quiet=True)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert a["scaler"]["_growth_tracker"] == 12  # one per step without an overflow: it counted through the cut
    assert a["scaler"] == b["scaler"]
    assert_same_state(a, b)


# -- non-finite training ----------------------------------------------------------------------------------

def test_diverging_run_stops_without_a_poisoned_checkpoint(make_config):
    """A plain ReLU RNN at lr 1e6 without clipping blows up within a few steps: the run stops with a
    message naming the step and the last good checkpoint, and that checkpoint is finite and resumable."""
    cfg = make_config(TEXT, model={"cell": "rnn", "nonlinearity": "relu"},
                      train={"optimizer": "sgd", "lr": 1e6, "grad_clip": 0.0, "checkpoint_every": 1})
    with pytest.raises(TrainingFailed) as info:
        train(cfg, quiet=True)
    message = str(info.value)
    step = int(re.search(r"at step (\d+)", message).group(1))
    last = Path(cfg.log.dir) / cfg.name / "checkpoints" / "last.pt"
    assert f"Last good checkpoint: {last}" in message
    state = load_checkpoint(last)
    assert state["step"] == step - 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_weights_that_turn_non_finite_are_never_saved(make_config, monkeypatch):
    """Even when loss and gradients look fine, weights that became inf are not written as last.pt."""
    cfg = make_config(TEXT, train={"checkpoint_every": 5, "eval_every": 7, "max_steps": 20})
    real_step = torch.optim.Adam.step
    calls = []

    def step_then_poison(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 10:  # step 10, a checkpoint step
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_poison)
    with pytest.raises(TrainingFailed, match=r"weights are no longer finite at step 10;.*last\.pt"):
        train(cfg, quiet=True)
    state = load_checkpoint(Path(cfg.log.dir) / cfg.name / "checkpoints" / "last.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_cli_reports_divergence_in_one_line_with_exit_1(tmp_path):
    from typer.testing import CliRunner

    from charrnn.cli import app

    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    res = CliRunner().invoke(app, [
        "train", "--config", str(REPO / "configs" / "ihello.yaml"), "--data", str(corpus), "-q",
        "--set", f"log.dir={tmp_path / 'runs'}", "--set", "model.cell=rnn", "--set", "model.nonlinearity=relu",
        "--set", "train.optimizer=sgd", "--set", "train.lr=1e6", "--set", "train.grad_clip=0",
        "--set", "train.checkpoint_every=1", "--set", "log.sample_every=0", "--set", "log.tensorboard=false",
    ])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert re.search(r"at step \d+", lines[0]) and "last.pt" in lines[0]


# -- Ctrl-C on the real command line -------------------------------------------------------------------------

def test_ctrl_c_exits_130_and_resume_continues(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: cc\ndata: {{path: {corpus}, val_fraction: 0.1}}\n"
        "model: {cell: gru, hidden_size: 16, num_layers: 1}\n"
        "train: {seq_length: 8, batch_size: 2, max_steps: 1000000, eval_every: 5, checkpoint_every: 1000,"
        " lr_schedule: constant, device: cpu}\n"
        f"log: {{dir: {tmp_path / 'runs'}, tensorboard: false, sample_every: 0}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", "--config", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("step 5:"):  # the first eval line: training is under way
            line = proc.stderr.readline()
        assert line.startswith("step 5:"), line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    match = re.fullmatch(r"interrupted at step (\d+); checkpoint saved\. Resume with: (charrnn train .*)", lines[0])
    assert match, lines[0]
    step = int(match.group(1))
    assert step >= 5
    assert load_checkpoint(tmp_path / "runs" / "cc" / "checkpoints" / "last.pt")["step"] == step

    command = shlex.split(match.group(2))[2:]  # as printed, after "charrnn train"
    assert "--resume" in command
    res = subprocess.run([sys.executable, "-m", "charrnn", "train", *command, "-q",
                          "--set", f"train.max_steps={step + 3}"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(tmp_path / "runs" / "cc" / "checkpoints" / "last.pt")["step"] == step + 3


def test_a_second_interrupt_stops_at_once_and_the_run_stays_resumable(make_config, monkeypatch):
    """Ctrl-C pressed twice during a long evaluation stops there, without waiting for the step to end;
    last.pt (step 2) is untouched and --resume continues from it."""
    cfg = make_config(TEXT, train={"checkpoint_every": 2, "eval_every": 4, "max_steps": 8})
    evaluate = validation_module.evaluate

    def impatient_evaluate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(validation_module, "evaluate", impatient_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, quiet=True)
    last = Path(cfg.log.dir) / cfg.name / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 2
    assert run_status.read(last.parent.parent)["step"] == 2  # said step 4, where the signal came, not last.pt's
    monkeypatch.undo()
    assert train(cfg, resume=True, quiet=True).step == 8


# -- no run that holds a model is a dead end ------------------------------------------------------------------

def test_a_run_stopped_after_its_first_best_and_before_its_first_last_resumes_from_best_exactly(tmp_path,
                                                                                                monkeypatch):
    """Issue 24, case 3: with eval_every < checkpoint_every a run killed between its first best.pt and its
    first last.pt had no way on: --resume wanted last.pt, a plain train refused the folder, and --overwrite
    deleted the only model. Now --resume continues from best.pt, and exactly."""
    cfg = resume_config(tmp_path, "random")  # eval_every 4, checkpoint_every 5
    reference = tmp_path / "reference"
    train(cfg, run_dir=reference, quiet=True)

    def killed(self):
        raise KeyboardInterrupt  # the process is stopped where last.pt would have been written

    monkeypatch.setattr(trainer_module.Trainer, "save_last", killed)
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir=run, quiet=True)
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt"]
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 4
    assert run_status.read(run)["step"] == 4  # the step --resume continues from
    assert train(cfg, run_dir=run, resume=True, quiet=True).step == STEPS
    assert_same_run(run, reference)


def test_a_tiny_time_budget_leaves_a_resumable_run(make_config):
    """`--set train.time_budget=0.001` finished before its first step with best.pt and no last.pt."""
    cfg = make_config(TEXT, train={"time_budget": 0.001, "max_steps": None})
    result = train(cfg, quiet=True)
    last = result.run_dir / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == result.step
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, time_budget=None, max_steps=result.step + 3))
    assert train(longer, resume=True, quiet=True).step == result.step + 3


def test_a_run_from_before_matrices_only_decay_resumes_with_its_one_group(tmp_path):
    """Checkpoints written before train.decay_vectors hold one optimizer group: resuming them keeps decaying every
    tensor (the run's recipe) instead of refusing the checkpoint for its group count."""
    import yaml

    cfg = resume_config(tmp_path, "random")
    run = tmp_path / "old"
    cfg.train.decay_vectors = True  # what every run did before the option existed
    cfg.train.max_steps = 5
    train(cfg, run_dir=run, quiet=True)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["config"]["train"]["decay_vectors"]
    from charrnn.run.checkpoint import save_checkpoint

    save_checkpoint(state, last)
    raw = yaml.safe_load((run / "config.yaml").read_text())
    del raw["train"]["decay_vectors"]
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg.train.max_steps, cfg.train.decay_vectors = STEPS, False  # today's default, as a config file gives it
    result = train(cfg, run_dir=run, resume=True, quiet=True)
    assert result.step == STEPS
    assert len(load_checkpoint(last)["optimizer"]["param_groups"]) == 1
