"""How a run ended is told honestly: `charrnn info`'s status line, status.json and TensorBoard's HParams session
status, for a finished, an interrupted, a diverged and a killed run; a resumed run's event files sort after
the killed session's; a failed run leaves no half-made folder; all ranks agree that the weights are finite."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from test_resume import STEPS, TEXT, resume_config, train_until_killed
from typer.testing import CliRunner

import charrnn.device as device_module
from charrnn.cli import app
from charrnn.errors import Interrupted, TrainingFailed, UserError
from charrnn.run import status as run_status
from charrnn.tracking import Tracker
from charrnn.training import distributed
from charrnn.training.loop import train


def hparams_status(run_dir: Path) -> str:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_end_info"]
    status = plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status
    return api_pb2.Status.Name(status)


def info_status(run_dir: Path) -> str:
    res = CliRunner().invoke(app, ["info", str(run_dir)])
    assert res.exit_code == 0, res.output
    (line,) = [line for line in res.stdout.splitlines() if line.startswith("status ")]
    return line.removeprefix("status ")


def status_config(tmp_path: Path, **train):
    return tiny_config(tmp_path, TEXT, train={"max_steps": 12, "checkpoint_every": 4, "eval_every": 4, **train},
                       log={"tensorboard": True})


def test_a_finished_run(tmp_path):
    run = train(status_config(tmp_path), quiet=True).run_dir
    assert info_status(run) == "finished (max_steps) at step 12"
    assert hparams_status(run) == "STATUS_SUCCESS"
    assert run_status.read(run)["status"] == "finished"


def test_an_interrupted_run_then_resumed_to_the_end(tmp_path):
    cfg = status_config(tmp_path)
    scalars = Tracker.scalars

    def scalars_then_signal(self, step, values):
        scalars(self, step, values)
        if step == 6 and "train/loss" in values:
            os.kill(os.getpid(), signal.SIGTERM)

    Tracker.scalars = scalars_then_signal
    try:
        with pytest.raises(Interrupted):
            train(cfg, quiet=True)
    finally:
        Tracker.scalars = scalars
    run = Path(cfg.log.dir) / cfg.name
    assert info_status(run) == "interrupted at step 6"
    assert hparams_status(run) == "STATUS_UNKNOWN"  # TensorBoard has no "stopped": not success, not failure
    train(cfg, resume=True, quiet=True)
    assert info_status(run) == "finished (max_steps) at step 12"
    assert hparams_status(run) == "STATUS_SUCCESS"  # the resumed session's status replaced the old one
    assert len(list(run.glob("events.out.tfevents.*.status"))) == 1


def test_a_diverged_run(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, model={"cell": "rnn", "nonlinearity": "relu"},
                      train={"optimizer": "sgd", "lr": 1e6, "grad_clip": 0.0, "checkpoint_every": 1},
                      log={"tensorboard": True})
    with pytest.raises(TrainingFailed) as failure:
        train(cfg, quiet=True)
    run = Path(cfg.log.dir) / cfg.name
    status = info_status(run)
    assert status.startswith("failed at step ") and "became" in status
    assert str(failure.value).split(";")[0] in status
    assert hparams_status(run) == "STATUS_FAILURE"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child")
def test_a_killed_run(tmp_path):
    cfg = status_config(tmp_path)
    run = tmp_path / "killed"
    train_until_killed(cfg, run, resume=False, kill="after_step", at=6)
    status = info_status(run)
    assert status.startswith("killed: the process (pid ") and "resume" in status
    assert hparams_status(run) == "STATUS_RUNNING"  # nothing could say otherwise; info tells the truth


def test_a_live_run_says_running(tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    run_status.write(run, "running", 3)
    assert run_status.describe(run) == f"running (pid {os.getpid()})"


def test_info_for_a_run_training_on_another_host_says_where_not_killed(tmp_path):
    """A run folder on a shared disk, training on another machine: its pid means nothing here, so info says
    where it runs rather than checking (and wrongly burying) a process of this machine's."""
    run = train(status_config(tmp_path), quiet=True).run_dir
    record = json.loads((run / "status.json").read_text(encoding="utf-8"))
    free_pid = max(2**22, int(Path("/proc/sys/kernel/pid_max").read_text()) + 1) if Path("/proc").is_dir() else 2**22
    record.update(status="running", pid=free_pid, host="gpu-box-7")
    (run / "status.json").write_text(json.dumps(record), encoding="utf-8")
    assert info_status(run) == f"running (pid {free_pid} on gpu-box-7)"
    record["host"] = socket.gethostname()  # the same record from this machine: that pid is no process here
    (run / "status.json").write_text(json.dumps(record), encoding="utf-8")
    assert info_status(run).startswith(f"killed: the process (pid {free_pid}) ended")


def _event_scalars(run_dir: Path) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("train/loss")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child")
def test_kill_and_resume_within_one_second_keeps_tensorboard_in_order(tmp_path):
    """TensorBoard reads event files in name order, and a name begins with the second it was made: a resume in
    the same second as the killed session (made certain here by giving the killed file this second and a pid
    that sorts late) must still read after it, so the curve equals the uninterrupted run's."""
    cfg = resume_config(tmp_path, "random")
    reference = tmp_path / "reference"
    train(cfg, run_dir=reference, quiet=True)
    run = tmp_path / "killed"
    train_until_killed(cfg, run, resume=False, kill="after_step", at=7)
    (killed,) = [p for p in run.glob("events.out.tfevents.*") if not p.name.endswith(".status")]
    killed.rename(run / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.99999999.0")
    train(cfg, run_dir=run, resume=True, quiet=True)
    assert _event_scalars(run) == _event_scalars(reference)
    assert [s for s, _ in _event_scalars(run)] == list(range(1, STEPS + 1))


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, model={"cell": "rnn", "nonlinearity": "relu"},
                      train={"optimizer": "sgd", "lr": 1e6, "grad_clip": 0.0, "checkpoint_every": 1000,
                             "eval_every": 1000, "max_steps": 500})
    with pytest.raises(TrainingFailed, match="Last good checkpoint: none"):
        train(cfg, quiet=True)
    assert not (Path(cfg.log.dir) / cfg.name).exists()
    empty = tmp_path / "mine"
    empty.mkdir()
    with pytest.raises(TrainingFailed):
        train(cfg, run_dir=empty, quiet=True)
    assert empty.is_dir() and not list(empty.iterdir())  # the user's own empty folder stays, as it was


def test_an_impossible_batch_is_refused_before_any_folder_is_made(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, train={"batching": "stateful", "batch_size": 1000})
    with pytest.raises(UserError, match="stateful batching"):
        train(cfg, quiet=True)
    assert not (Path(cfg.log.dir) / cfg.name).exists()


def test_finite_weights_are_agreed_by_all_ranks(tmp_path, monkeypatch):
    """Another rank that found non-finite weights stops this one too, at the first eval/checkpoint step,
    through the agreement (the local weights here are fine)."""
    monkeypatch.setattr(distributed.DistContext, "any_rank", lambda self, flag: True)
    cfg = tiny_config(tmp_path, TEXT, train={"checkpoint_every": 3, "eval_every": 5, "max_steps": 10})
    with pytest.raises(TrainingFailed, match="weights are no longer finite at step 3"):
        train(cfg, quiet=True)


def test_emulated_bf16_gets_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: False)
    cfg = tiny_config(tmp_path, TEXT, model={"cell": "gru"}, train={"precision": "bf16", "max_steps": 2})
    train(cfg)
    err = capsys.readouterr().err
    assert "no native bf16" in err and "train.precision: auto or fp32" in err


def test_no_note_where_bf16_is_native_or_not_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: True)
    train(tiny_config(tmp_path, TEXT, model={"cell": "gru"}, train={"precision": "bf16", "max_steps": 2}))
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: False)
    (tmp_path / "b").mkdir()
    train(tiny_config(tmp_path / "b", TEXT, model={"cell": "gru"}, train={"max_steps": 2}))
    assert "native bf16" not in capsys.readouterr().err


def test_dropout_masks_differ_by_rank_seed():
    from charrnn.training.setup import rank_seed as _rank_seed

    seeds = {_rank_seed(0, rank) for rank in range(1, 64)} | {0}
    assert len(seeds) == 64
    torch.manual_seed(_rank_seed(0, 1))
    a = torch.rand(8)
    torch.manual_seed(0)
    assert not torch.equal(a, torch.rand(8))
