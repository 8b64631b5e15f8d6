"""A disk that fills up while charrnn writes: one line naming the file, exit 1, nothing that was there lost, and a
run that --resume continues once there is space again. Each test mounts a small tmpfs (root only; skipped
elsewhere), because nothing else makes write(2) fail the way a user's full disk does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fill, one_line_error, small_disk, tiny_config
from typer.testing import CliRunner

import charrnn.training.checkpointing as checkpointing_module
from charrnn.cli import app
from charrnn.config import save_config
from charrnn.errors import TrainingFailed
from charrnn.run import status as run_status
from charrnn.run.checkpoint import load_checkpoint
from charrnn.tracking import Tracker

runner = CliRunner()
TEXT = "the quick brown fox jumps over the lazy dog. " * 4


def cli_train(tmp_path: Path, cfg, *flags: str):
    cfg_file = tmp_path / "c.yaml"
    save_config(cfg, cfg_file)
    return runner.invoke(app, ["train", "--config", str(cfg_file), "-q", *flags])


def fill_after_first(monkeypatch, disk: Path, name: str) -> None:
    """Fill the disk as soon as the first checkpoint called `name` is written."""
    save = checkpointing_module.save_checkpoint

    def save_then_fill(state, path):
        save(state, path)
        if Path(path).name == name and not (disk / "filler").exists():
            fill(disk)

    monkeypatch.setattr(checkpointing_module, "save_checkpoint", save_then_fill)


@pytest.mark.parametrize("first", ["last.pt", "best.pt"])
def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, first):
    """Issue 24, case 10: torch's zip writer hid the OSError behind 'RuntimeError: [enforce fail at
    inline_container.cc:672] . unexpected pos': a 70-line traceback and a status that quoted it. With the disk full
    right after the first best.pt (before any last.pt) the run was also a dead end."""
    with small_disk(tmp_path / "disk", "2m") as disk:
        cfg = tiny_config(tmp_path, TEXT, model={"hidden_size": 64},
                          train={"max_steps": 30, "eval_every": 5 if first == "best.pt" else 10,
                                 "checkpoint_every": 10},
                          log={"dir": str(disk)})
        fill_after_first(monkeypatch, disk, first)
        res = cli_train(tmp_path, cfg)
        line = one_line_error(res, "could not write the checkpoint", "No space left on device", "--resume", code=1)
        assert "enforce fail" not in line
        run = disk / cfg.name
        status = run_status.read(run)
        assert status["status"] == "failed" and "No space left on device" in status["detail"]
        kept = run / "checkpoints" / first
        step = load_checkpoint(kept)["step"]  # intact
        assert not list((run / "checkpoints").glob(".*.tmp-*"))
        monkeypatch.undo()
        (disk / "filler").unlink()
        res = cli_train(tmp_path, cfg, "--resume")
        assert res.exit_code == 0, res.output
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 30 > step


def test_a_full_disk_in_tensorboard_is_one_line_without_the_writer_threads_traceback(tmp_path, capfd):
    """Issue 24, case 13: 'Exception in thread Thread-1' and a traceback, then 'error: No space left on device'
    naming no file, and status.json left at 'running'."""
    with small_disk(tmp_path / "disk", "256k") as disk:
        tracker = Tracker(disk, tensorboard=True, quiet=True)
        fill(disk)
        with pytest.raises(TrainingFailed, match=f"TensorBoard log in {disk} .*No space left"):
            for step in range(1, 5000):
                tracker.scalars(step, {"train/loss": 1.0 / step, "train/lr": 0.01})
            tracker.flush()
        with pytest.raises(TrainingFailed):
            tracker.close()
        assert "Exception in thread" not in capfd.readouterr().err
        with pytest.raises(TrainingFailed, match="metrics.jsonl .*No space left"):
            Tracker(disk, tensorboard=False, quiet=True).eval_record(
                {"step": 1, "train_loss": 1.0, "val_loss": 1.0, "val_bpc": 1.4, "val_accuracy": 0.5,
                 "chars_per_sec": 1.0})


def test_the_status_is_written_even_when_the_disk_is_full(tmp_path):
    """A run that failed for want of space stayed 'running': status.json could not be replaced."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        run_status.write(disk, "running", 5)
        fill(disk)
        run_status.write(disk, "failed", 7, "could not write the checkpoint x (No space left on device)")
        assert run_status.read(disk)["status"] == "failed"
        assert json.loads((disk / "status.json").read_text())["step"] == 7


def test_a_full_disk_while_encoding_names_the_cache_file(tmp_path):
    """The message read '...: None; set data.cache ...' (numpy reports a short write without an errno)."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        cfg = tiny_config(tmp_path, "hihello " * 20_000, data={"cache": str(disk / "cache")})
        line = one_line_error(cli_train(tmp_path, cfg), "could not write the encoded corpus cache", str(disk),
                              "no space left on device", code=1)
        assert "None" not in line
        assert not list((disk / "cache").rglob("*.tmp-*"))
