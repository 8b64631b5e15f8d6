"""Checkpoints are written atomically and read without running code: a failed write leaves the previous
last.pt usable, and a file whose pickle would run code, or a damaged file, is refused with one line."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_resume import STEPS, assert_same_state, resume_config
from typer.testing import CliRunner

import charrnn.safe_files as checkpoint_module
from charrnn.cli import app
from charrnn.config import save_config
from charrnn.data.corpus import open_corpus
from charrnn.errors import TrainingFailed, UserError
from charrnn.evaluate import evaluate
from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint, state_digest
from charrnn.safe_files import atomic_write
from charrnn.trained import model_from_checkpoint
from charrnn.training.loop import train

runner = CliRunner()


# -- atomic writes ------------------------------------------------------------------------------------------

def test_atomic_write_that_fails_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"new, but only half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_full_disk_during_a_checkpoint_keeps_last_pt_and_resume_is_exact(tmp_path, monkeypatch):
    """The step-10 write of last.pt goes to /dev/full (a real ENOSPC from the kernel): training stops with
    exit 1 and one line, the step-5 last.pt still loads, and resuming ends where an uninterrupted run does."""
    cfg = resume_config(tmp_path, "random")
    reference = train(cfg, run_dir=tmp_path / "reference", quiet=True).run_dir
    cfg_file = tmp_path / "c.yaml"
    save_config(cfg, cfg_file)

    real_open = open
    failed = []

    def open_full_disk_once(path, mode="r", *args, **kwargs):
        if ".last.pt.tmp" in str(path) and not failed and os.path.exists(Path(path).parent / "last.pt"):
            failed.append(path)
            Path(path).touch()  # the temporary file exists, as it would, but every write to it fails
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "open", open_full_disk_once, raising=False)
    run = tmp_path / "runs" / "full"
    res = runner.invoke(app, ["train", "--config", str(cfg_file), "--run-dir", str(run), "-q"])
    line = one_line_error(res, code=1)
    assert "No space left on device" in line and "--resume" in line
    assert failed
    last = run / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 5
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]  # no half-written file

    monkeypatch.undo()
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "-q"])
    assert res.exit_code == 0, res.output
    resumed = load_checkpoint(last)
    assert resumed["step"] == STEPS
    assert_same_state(resumed, load_checkpoint(reference / "checkpoints" / "last.pt"))


def test_save_checkpoint_turns_a_write_error_into_a_training_failure(tmp_path, monkeypatch):
    def no_space(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(TrainingFailed, match="No space left on device.*start again"):
        save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())


# -- checkpoints that would run code -------------------------------------------------------------------------

class _Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _evil_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"format": "charrnn-checkpoint", "model": _Payload(marker)}, protocol=2))
    zipped = tmp_path / "zipped.pt"  # torch's own zip format, payload inside data.pkl
    torch.save({"format": "charrnn-checkpoint", "version": 1, "weights": torch.zeros(2), "x": _Payload(marker)},
               zipped)
    return {"plain": plain, "zipped": zipped}


def test_the_payloads_are_live(tmp_path):
    """Guard for the test below: loaded the unsafe way, each file really does run its command."""
    marker = tmp_path / "pwned"
    files = _evil_files(tmp_path, marker)
    pickle.loads(files["plain"].read_bytes())
    assert marker.exists()
    marker.unlink()
    assert zipfile.is_zipfile(files["zipped"])
    torch.load(files["zipped"], weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["plain", "zipped"])
@pytest.mark.parametrize("command", ["sample", "eval", "info", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, make_config, kind, command):
    marker = tmp_path / "pwned"
    evil = _evil_files(tmp_path, marker)[kind]
    if command == "resume":
        cfg = make_config()
        run = tmp_path / "runs" / "victim"
        (run / "checkpoints").mkdir(parents=True)
        save_config(cfg, run / "config.yaml")
        (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
        args = ["train", "--resume", "--run-dir", str(run), "-q"]
    else:
        args = [command, str(evil)]
    line = one_line_error(runner.invoke(app, args))
    assert "refused to load" in line and "only load checkpoints written by charrnn" in line
    assert not marker.exists()


# -- damaged checkpoints -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("good")
    result = train(tiny_config(tmp, "hello world " * 10, train={"max_steps": 4}), quiet=True)
    return (result.run_dir / "checkpoints" / "last.pt").read_bytes()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoints_are_user_errors(tmp_path, good_checkpoint, data):
    """Truncated files and random bytes are refused with one line (exit 2); a flipped byte is either
    refused the same way or still loads, but never ends in a traceback."""
    how = data.draw(st.sampled_from(["truncate", "random", "flip"]))
    if how == "truncate":
        blob = good_checkpoint[: data.draw(st.integers(0, len(good_checkpoint) - 1))]
    elif how == "random":
        blob = data.draw(st.binary(max_size=400))
    else:
        at = data.draw(st.integers(0, len(good_checkpoint) - 1))
        blob = good_checkpoint[:at] + bytes([good_checkpoint[at] ^ 0xFF]) + good_checkpoint[at + 1:]
    path = tmp_path / "damaged.pt"
    path.write_bytes(blob)
    if how != "flip":
        with pytest.raises(UserError):
            load_checkpoint(path)
    res = runner.invoke(app, ["info", str(path)])
    if how != "flip" or res.exit_code != 0:
        one_line_error(res)


def test_a_full_disk_while_logging_is_one_line_and_exit_1(make_config, monkeypatch):
    from charrnn.tracking import Tracker

    def no_space(self, record):
        raise OSError(28, "No space left on device", str(self.run_dir / "metrics.jsonl"))

    monkeypatch.setattr(Tracker, "eval_record", no_space)
    cfg = make_config()
    cfg_file = Path(cfg.log.dir).parent / "c.yaml"
    save_config(cfg, cfg_file)
    line = one_line_error(runner.invoke(app, ["train", "--config", str(cfg_file), "-q"]), code=1)
    assert "No space left on device" in line and "metrics.jsonl" in line


# -- which checkpoint a command loads ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_with_two_checkpoints(tmp_path_factory):
    """A trained run whose last.pt has been replaced by the same model with every weight zero: its loss is
    exactly ln(V) (uniform predictions), so each command's numbers show which file it loaded."""
    tmp = tmp_path_factory.mktemp("two")
    run = train(tiny_config(tmp, "hello world " * 10, train={"max_steps": 20}), quiet=True).run_dir
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    return run, len(state["vocab"])


def eval_loss(*args: str) -> float:
    res = runner.invoke(app, ["eval", *args, "--split", "train", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["loss"]


def test_resolve_checkpoint_best_last_path_and_fallback(run_with_two_checkpoints, tmp_path):
    run, vocab_size = run_with_two_checkpoints
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    assert resolve_checkpoint(run) == best
    assert resolve_checkpoint(run, "best") == best
    assert resolve_checkpoint(run, "last") == last
    assert resolve_checkpoint(run, str(last)) == last
    assert resolve_checkpoint(last, "best") == last  # RUN given as a file: that file
    # through the CLI: best (default) learned something; last is the zeroed model
    assert eval_loss(str(run)) < math.log(vocab_size) - 0.2
    assert eval_loss(str(run), "--checkpoint", "last") == pytest.approx(math.log(vocab_size), abs=1e-6)
    assert eval_loss(str(run), "--checkpoint", str(last)) == pytest.approx(math.log(vocab_size), abs=1e-6)

    copy = tmp_path / "copy"
    (copy / "checkpoints").mkdir(parents=True)
    shutil.copy(last, copy / "checkpoints" / "last.pt")
    assert resolve_checkpoint(copy, "best") == copy / "checkpoints" / "last.pt"  # no best.pt yet: last.pt
    assert eval_loss(str(copy)) == pytest.approx(math.log(vocab_size), abs=1e-6)


def test_resolve_checkpoint_errors_are_one_line(run_with_two_checkpoints, tmp_path):
    run, _ = run_with_two_checkpoints
    empty = tmp_path / "untrained"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="has no best checkpoint"):
        resolve_checkpoint(empty, "best")
    with pytest.raises(UserError, match="has no last checkpoint"):
        resolve_checkpoint(empty, "last")
    with pytest.raises(UserError, match="use best, last or the path of a checkpoint file"):
        resolve_checkpoint(run, "newest")
    line = one_line_error(runner.invoke(app, ["sample", str(empty)]))
    assert "has no best checkpoint" in line
    line = one_line_error(runner.invoke(app, ["eval", str(run), "--checkpoint", str(tmp_path / "gone.pt")]))
    assert "use best, last or the path" in line


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "someone-else"}, "is not a charrnn checkpoint"),
    ({"version": 3}, "has format version 3; this charrnn reads versions 1, 2"),
    ({"version": None}, "has format version None"),
    ({"drop": ["model", "vocab"]}, "incomplete: missing vocab, model"),
    ({"drop": ["step"]}, "incomplete: missing step"),
])
def test_foreign_format_version_or_missing_keys_are_named(good_checkpoint, tmp_path, change, message):
    state = torch.load(io.BytesIO(good_checkpoint), weights_only=True)
    for key in change.pop("drop", []):
        del state[key]
    state.update(change)
    state["digest"] = state_digest({k: v for k, v in state.items() if k != "digest"})  # odd, not damaged
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    assert message in str(info.value)
    for command in ("eval", "sample", "info"):
        assert message in one_line_error(runner.invoke(app, [command, str(path)]))


# -- what eval scores --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splits")
    text = "".join(f"line {i}: the cat sat on the mat.\n" for i in range(12))
    cfg = tiny_config(tmp, text, data={"val_fraction": 0.2, "test_fraction": 0.2}, train={"max_steps": 20})
    run = train(cfg, quiet=True).run_dir
    model, vocab, cfg = model_from_checkpoint(load_checkpoint(resolve_checkpoint(run)))
    return run, model, vocab, open_corpus(cfg, vocab).splits(0.2, 0.2)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_eval_scores_the_split_asked_for(split_run, split):
    run, model, _, splits = split_run
    scores = {name: evaluate(model, ids).loss for name, ids in splits.items()}
    assert len(set(scores.values())) == 3  # guard: a wrong split would give other numbers
    res = runner.invoke(app, ["eval", str(run), "--split", split, "--json"])
    assert res.exit_code == 0, res.output
    expected = evaluate(model, splits[split])
    assert json.loads(res.stdout) == pytest.approx(expected.to_dict(), rel=1e-9)
    assert json.loads(res.stdout)["chars"] == len(splits[split]) - 1


def test_eval_data_scores_that_file(split_run, tmp_path):
    run, model, vocab, _ = split_run
    text = "the mat sat on the cat.\n" * 3
    path = tmp_path / "other.txt"
    path.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["eval", str(run), "--data", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["chars"] == len(text) - 1
    assert got == pytest.approx(evaluate(model, vocab.encode(text)).to_dict(), rel=1e-9)
