"""One writer per run folder: a second trainer is refused at once, naming the first, and touches nothing;
a trainer killed with SIGKILL never blocks the next one; readers work on a run that is training."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from test_checkpoint import one_line_error
from test_resume import TEXT, assert_same_state, train_until_killed
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import save_config
from charrnn.errors import UserError
from charrnn.run.checkpoint import load_checkpoint
from charrnn.run.folder import MARKER, prepare_run_dir
from charrnn.run.lock import LOCK_NAME, Holder, hold_run_folder, lock_holder
from charrnn.training.loop import train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
runner = CliRunner()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the lock itself ------------------------------------------------------------------------------------------

def test_a_held_folder_is_refused_naming_the_holder_and_nothing_is_touched(tmp_path):
    root = tmp_path / "run"
    with hold_run_folder(root):
        (root / "config.yaml").write_text("x")
        before = snapshot(root)
        # A second open file description conflicts with the first, in one process as across processes.
        with pytest.raises(UserError) as info, hold_run_folder(root):
            pass
        assert snapshot(root) == before
        assert lock_holder(root) == Holder(os.getpid(), socket.gethostname())
    pid = os.getpid()
    assert str(info.value) == (f"{root} is being trained by pid {pid} on this host ({socket.gethostname()}); "
                               f"wait for it to finish or stop it (kill {pid})")
    assert not (root / LOCK_NAME).exists() and lock_holder(root) is None  # released, and the file removed


def test_the_lock_is_released_when_the_block_fails(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    with pytest.raises(RuntimeError), hold_run_folder(root):
        raise RuntimeError("the run failed")
    with hold_run_folder(root):
        pass


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert lock_holder(root) is None
    with hold_run_folder(root):
        assert json.loads((root / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_new_folder_is_removed_again_if_nothing_was_written(tmp_path):
    root = tmp_path / "runs" / "new"
    with pytest.raises(UserError), hold_run_folder(root):
        raise UserError("bad config")
    assert not (tmp_path / "runs").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with hold_run_folder(existing):
        pass
    assert existing.is_dir()


def test_a_run_that_fails_validation_leaves_no_folder(make_config):
    cfg = make_config(train={"batch_size": 2, "seq_length": 64})  # longer than the 7-character corpus
    with pytest.raises(UserError):
        train(cfg, quiet=True)
    assert not (Path(cfg.log.dir) / cfg.name).exists()


def test_nothing_is_created_or_locked_without_create_or_on_other_ranks(tmp_path):
    with hold_run_folder(tmp_path / "a", create=False), hold_run_folder(tmp_path / "b", enabled=False):
        pass
    assert not list(tmp_path.iterdir())
    (tmp_path / "c").mkdir()
    with hold_run_folder(tmp_path / "c"), hold_run_folder(tmp_path / "c", enabled=False):
        pass  # a non-zero rank does not take the lock rank 0 holds


def test_overwrite_deletes_the_old_run_but_keeps_the_lock(tmp_path):
    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.yaml").write_text("old")
    (root / "vocab.json").write_text("{}")
    (root / "metrics.jsonl").write_text("{}\n")
    with hold_run_folder(root):
        lock = (root / LOCK_NAME).stat()
        prepare_run_dir(root, overwrite=True)
        assert sorted(p.name for p in root.iterdir()) == [MARKER, LOCK_NAME, "checkpoints"]
        assert os.path.samestat(lock, (root / LOCK_NAME).stat())
        with pytest.raises(UserError, match="is being trained by pid"), hold_run_folder(root):
            pass


# -- two trainers, one folder ---------------------------------------------------------------------------------

GATED_TRAINER = """\
import sys, time
from pathlib import Path
from charrnn.tracking import Tracker

gate, at = Path(sys.argv[1]), int(sys.argv[2])
scalars = Tracker.scalars

def scalars_then_wait(self, step, values):  # holds the run at a step until the test opens the gate
    scalars(self, step, values)
    if step == at and "train/loss" in values:
        (gate / "reached").touch()
        while not (gate / "go").exists():
            time.sleep(0.02)

Tracker.scalars = scalars_then_wait
from charrnn.cli import app
app(args=sys.argv[3:], prog_name="charrnn")
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def start_gated_trainer(tmp_path: Path, args: list[str], at: int) -> tuple[subprocess.Popen, Path]:
    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "gated_trainer.py"
    script.write_text(GATED_TRAINER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(gate), str(at), *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (gate / "reached").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the first trainer did not reach step {at}: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc, gate


def test_a_second_trainer_is_refused_at_once_and_the_first_ends_as_if_alone(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, data={"val_fraction": 0.2},
                      train={"max_steps": 12, "checkpoint_every": 4, "eval_every": 4, "threads": 1})
    alone = train(cfg, run_dir=tmp_path / "alone", quiet=True).run_dir
    cfg_file = tmp_path / "c.yaml"
    save_config(cfg, cfg_file)
    run = tmp_path / "run"
    first, gate = start_gated_trainer(tmp_path, ["train", "--config", str(cfg_file), "--run-dir", str(run), "-q"],
                                      at=6)
    try:
        before = snapshot(run)
        assert {"config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", LOCK_NAME} <= set(before)

        # While the first waits at its gate, a second `charrnn train` process can only end by being refused.
        second = subprocess.run([sys.executable, "-m", "charrnn", "train", "--config", str(cfg_file), "--run-dir",
                                 str(run), "-q"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"is being trained by pid {first.pid} on this host" in lines[0], second.stderr
        assert f"(kill {first.pid})" in lines[0]

        for args in (["--resume", "--run-dir", str(run)], ["--config", str(cfg_file), "--run-dir", str(run),
                                                          "--overwrite"]):
            start = time.monotonic()
            line = one_line_error(runner.invoke(app, ["train", *args, "-q"]))
            assert time.monotonic() - start < 2.0  # issue 13's bound; it takes milliseconds (nothing waits)
            assert f"{run} is being trained by pid {first.pid}" in line

        # Readers work on the run being trained: they read its last complete checkpoints.
        res = runner.invoke(app, ["sample", str(run), "--length", "20", "--seed", "0"])
        assert res.exit_code == 0 and len(res.stdout) > 20, res.output
        res = runner.invoke(app, ["eval", str(run), "--json"])
        assert res.exit_code == 0 and "bpc" in json.loads(res.stdout), res.output
        res = runner.invoke(app, ["info", str(run)])
        assert res.exit_code == 0 and "4 / 12" in res.stdout, res.output

        assert snapshot(run) == before  # neither the refused trainers nor the readers touched anything
    finally:
        (gate / "go").touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert_same_state(load_checkpoint(run / "checkpoints" / "last.pt"),
                      load_checkpoint(alone / "checkpoints" / "last.pt"))
    assert not (run / LOCK_NAME).exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child")
def test_a_trainer_killed_with_sigkill_never_blocks_resume(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, train={"max_steps": 12, "checkpoint_every": 4})
    run = tmp_path / "run"
    train_until_killed(cfg, run, resume=False, kill="after_checkpoint", at=8)
    stale = json.loads((run / LOCK_NAME).read_text())  # the killed trainer held the lock and left its file
    assert stale["pid"] != os.getpid() and lock_holder(run) is None
    save_config(cfg, tmp_path / "c.yaml")
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "-q"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 12
