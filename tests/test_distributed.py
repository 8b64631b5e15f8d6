"""Data-parallel training under torchrun (gloo on CPU): two processes reproduce one process's global batch.

Each launch starts real processes (about 5-10 s here), so the configs are tiny and every run is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.config import config_from_dict
from charrnn.errors import UserError
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training import autosize, distributed
from charrnn.training.clock import Stopwatch
from charrnn.training.loop import train
from charrnn.training.state import TrainState
from charrnn.training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n" * 30


def write_config(tmp_path: Path, **train_overrides) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    raw = {
        "name": "ddp",
        "seed": 0,
        "data": {"path": str(corpus), "val_fraction": 0.1, "cache": str(tmp_path / "cache")},
        "model": {"cell": "lstm", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 16, "num_layers": 1},
        "train": {"seq_length": 8, "batch_size": 4, "max_steps": 6, "optimizer": "adam", "lr": 0.01,
                  "lr_schedule": "constant", "eval_every": 3, "checkpoint_every": 3, "device": "cpu", "threads": 1,
                  **train_overrides},
        "log": {"dir": str(tmp_path / "runs"), "tensorboard": True, "sample_every": 3, "sample_length": 10},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def run_job(cmd: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a torchrun job in a session of its own, so that a timeout ends the workers too (killing torchrun
    alone leaves them waiting for its store for half an hour)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun_job(*args: str, nproc: int = 2) -> tuple[list[str], dict]:
    """The command and environment of a local torchrun job of charrnn train. --standalone lets the rendezvous
    take a free port itself (a port picked here and released could be taken before torchrun binds it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            "charrnn", "train", "--quiet", *args], env


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    result = run_job(*torchrun_job(*args, nproc=nproc))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("train/loss")]


def single_process(config: Path, run_dir: Path, **overrides) -> None:
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["train"].update(overrides)
    train(config_from_dict(raw), run_dir=run_dir, quiet=True)


def test_torchrun_two_processes_train_like_one_process_and_resume(tmp_path):
    """One uninterrupted single-process run against torchrun with 2 processes, stopped after 3 steps and
    resumed for 3 more: per-step losses agree, and only rank 0 wrote anything. Stateful batching makes each
    rank carry its rows of the hidden state, so checkpoints must hold the whole batch's."""
    config = write_config(tmp_path, batching="stateful")
    single_process(config, tmp_path / "single")
    run = tmp_path / "ddp"
    torchrun("--config", str(config), "--run-dir", str(run), "--set", "train.max_steps=3")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["hidden"][0].shape == (1, 4, 16)  # (L, B, H)
    torchrun("--resume", "--run-dir", str(run), "--set", "train.max_steps=6")

    single, ddp = train_losses(tmp_path / "single"), train_losses(run)
    assert [s for s, _ in ddp] == [1, 2, 3, 4, 5, 6] == [s for s, _ in single]
    for (_, a), (_, b) in zip(single, ddp, strict=True):
        assert abs(a - b) < 1e-5  # the logged loss is the global-batch mean, not rank 0's half
    events = [p.name for p in run.glob("events.out.tfevents.*")]
    assert len([e for e in events if not e.endswith(".status")]) == 2  # one per session, both from rank 0
    assert len([e for e in events if e.endswith(".status")]) == 1  # the HParams status, replaced as it changes
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert not list(run.rglob("*.tmp*"))
    metrics = [yaml.safe_load(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [3, 6]  # each eval written once
    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_chars_per_sec_counts_the_global_batch_once(make_config):
    """train.batch_size is the global batch, split over the ranks: a step of 2 processes trains batch_size x
    seq_length characters in all. chars/s used to multiply that by the process count too (2x under torchrun)."""
    trainer = Trainer.__new__(Trainer)  # only what the rate reads: no process group, no run folder
    trainer.cfg = make_config(train={"batch_size": 4, "seq_length": 6})
    trainer.dist = distributed.DistContext(rank=0, world_size=2)
    trainer.state, trainer.speed = TrainState(step=10), 0.0
    trainer.clock = Stopwatch(already=2.0)  # 2 s, plus the microseconds until the call
    assert trainer._chars_per_sec(0.0, 0) == pytest.approx(10 * 4 * 6 / 2.0, rel=1e-3)


def test_batch_must_split_evenly_over_the_processes(make_config, monkeypatch):
    monkeypatch.setattr(distributed, "_CONTEXT", distributed.DistContext(rank=0, world_size=2))
    with pytest.raises(UserError, match="does not split evenly over 2 processes"):
        train(make_config(train={"batch_size": 3}), quiet=True)


def test_python_dash_m_charrnn_is_the_cli():
    result = subprocess.run([sys.executable, "-m", "charrnn", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "train" in result.stdout


def test_a_refusal_on_rank_0_ends_every_rank_at_once(tmp_path):
    """Rank 0 alone checks the run folder; when it refuses (the folder already holds a run), the other ranks must
    hear of it and exit with the same line, not wait in the next collective until its 30-minute timeout."""
    config = write_config(tmp_path)
    single_process(config, tmp_path / "ddp")  # a finished run: a plain train into it is refused
    job = torchrun_job("--config", str(config), "--run-dir", str(tmp_path / "ddp"))
    started = time.monotonic()
    result = run_job(*job, timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert lines and all(line == lines[0] for line in lines) and "already holds a run" in lines[0], lines
    assert "charrnn/" not in result.stderr


def test_a_diverging_torchrun_run_ends_on_every_rank_with_one_line(tmp_path):
    """A learning rate that blows up: all ranks stop at the same step (they agree through the per-step
    all-reduce), the job exits 1 within seconds, and charrnn says so once (rank 0), in one line."""
    config = write_config(tmp_path, optimizer="sgd", lr=1e6, grad_clip=0.0, max_steps=10_000, eval_every=5,
                          checkpoint_every=1)
    job = torchrun_job("--config", str(config), "--set", "model.cell=rnn", "--set", "model.nonlinearity=relu",
                       "--run-dir", str(tmp_path / "ddp"))
    started = time.monotonic()
    result = run_job(*job)
    assert result.returncode == 1, result.stderr[-3000:]
    assert time.monotonic() - started < 60  # no rank sat in an all-reduce until the 30-minute timeout
    charrnn_lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(charrnn_lines) == 1 and "at step" in charrnn_lines[0], result.stderr[-3000:]
    assert "charrnn/" not in result.stderr  # no traceback of ours (torchrun adds its own report of the exit)


def test_torchrun_with_dropout_draws_masks_per_rank_and_resumes_exactly(tmp_path):
    """With dropout each rank draws its own masks (checkpoints keep every rank's RNG), and a torchrun run cut
    after 3 steps and resumed ends with the same weights as one run straight through."""
    config = write_config(tmp_path, max_steps=6)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["model"].update(num_layers=2, dropout=0.3)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    torchrun("--config", str(config), "--run-dir", str(tmp_path / "straight"))
    torchrun("--config", str(config), "--run-dir", str(tmp_path / "cut"), "--set", "train.max_steps=3")
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    rank0, rank1 = (r["torch"] for r in state["rank_rngs"])
    assert not torch.equal(rank0, rank1)  # the ranks' generators went separate ways
    torchrun("--resume", "--run-dir", str(tmp_path / "cut"), "--set", "train.max_steps=6")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_ranks_agree_on_an_auto_width(tmp_path):
    """Each rank probes its own rows on its own clock; speeds and stops are agreed over the ranks (one
    collective per width and one at the end), so every rank builds the same model (DDP refuses different
    shapes) and config.yaml holds the one resolved width: with 4 steps of 32 characters, the narrowest."""
    config = write_config(tmp_path, time_budget=1000, max_steps=4)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["model"].update(hidden_size="auto", embedding_dim="auto", tie_weights=True)
    raw["log"].update(tensorboard=False, sample_every=0)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    torchrun("--config", str(config), "--run-dir", str(tmp_path / "auto"))
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["model"]["hidden_size"] == saved["model"]["embedding_dim"] == min(autosize.CANDIDATE_WIDTHS)
    assert load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.pt")["step"] == 4
