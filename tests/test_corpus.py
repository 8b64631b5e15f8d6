"""The config's corpus on the command line: folders and several paths for `train`, the run's own cache for
`eval`, and the one-line errors of a corpus that cannot be used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, one_line_error
from typer.testing import CliRunner

from charrnn.cli import app

runner = CliRunner()
CONFIG = str(REPO / "configs" / "ihello.yaml")
TINY = ["--set", "model.hidden_size=8", "--set", "model.num_layers=1", "--set", "train.max_steps=2",
        "--set", "train.batch_size=2", "--set", "train.seq_length=4", "--set", "train.eval_every=2",
        "--set", "log.tensorboard=false", "--set", "log.sample_every=0", "--set", "train.device=cpu"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs go to ./runs, as by default: relative to where charrnn was started


def train(tmp_path: Path, *args: str):
    return runner.invoke(app, ["train", "--config", CONFIG, "--set", "log.dir=runs", "--name", "r", *TINY, *args])


@pytest.fixture
def source_tree(tmp_path):
    root = tmp_path / "src"
    for name, content in {"a.py": "import os\n", "pkg/b.py": "x = 1\n", "pkg/notes.txt": "not python\n",
                          "pkg/logo.py": b"\x89PNG\r\n\x1a\n\xff", "c.bin": b"\x00\xff"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def test_train_on_a_folder_with_a_glob_skips_binary_files_in_one_note(tmp_path, source_tree):
    res = train(tmp_path, "--data", str(source_tree), "--set", "data.include=**/*.py", "--set",
                "data.val_fraction=0.3")
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: skipped")]
    assert notes == ["note: skipped 1 file that is not UTF-8 text: pkg/logo.py"]
    saved = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["path"] == str(source_tree.resolve()) and saved["data"]["include"] == "**/*.py"
    assert saved["data"]["cache"] == str((tmp_path / "runs" / ".cache").resolve())  # absolute: usable from anywhere
    vocab = json.loads((tmp_path / "runs" / "r" / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert set(vocab) == set("import os\n" + "x = 1\n")  # notes.txt and the binary files left out


def test_several_data_paths(tmp_path, source_tree):
    (tmp_path / "extra.txt").write_text("QQQQ", encoding="utf-8")
    res = train(tmp_path, "--data", str(tmp_path / "extra.txt"), "--data", str(source_tree / "a.py"))
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["path"] == [str(tmp_path / "extra.txt"), str(source_tree / "a.py")]
    assert "Q" in json.loads((tmp_path / "runs" / "r" / "vocab.json").read_text(encoding="utf-8"))["chars"]


@pytest.mark.parametrize(("args", "fragments"), [
    (["--set", "data.include=**/*.rs"], ["holds no file matching data.include '**/*.rs'"]),
    (["--set", "data.include=[]"], ["data.include", "non-empty list"]),
    (["--set", "data.include=***["], ["no file matching"]),
])
def test_a_glob_that_matches_nothing_is_one_line_and_no_run_folder(tmp_path, source_tree, args, fragments):
    one_line_error(train(tmp_path, "--data", str(source_tree), *args), *fragments)
    assert not (tmp_path / "runs" / "r").exists()


def test_data_from_a_pipe_says_a_regular_file_is_needed(tmp_path):
    """`--data /dev/stdin` from a pipe said "data file not found: /proc/.../pipe:[...]"."""
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "--config", CONFIG, "--data", "/dev/stdin",
         "--set", f"log.dir={tmp_path}", "-q"],
        input="some text\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "/dev/stdin is a pipe, not a regular file" in proc.stderr
    assert "/proc/" not in proc.stderr and not any(tmp_path.iterdir())


@pytest.fixture
def trained_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabcabd\n" * 20, encoding="utf-8")
    res = train(tmp_path, "--data", str(corpus))
    assert res.exit_code == 0, res.output
    return tmp_path / "runs" / "r"


def test_eval_from_another_folder_writes_no_cache_there(tmp_path, trained_run, monkeypatch):
    """`eval RUN --split train` run elsewhere created ./runs/.cache in the current folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for cache in (tmp_path / "runs" / ".cache",):
        for entry in cache.iterdir():  # as if the cache had been cleared: eval must encode again
            for f in entry.iterdir():
                f.unlink()
            entry.rmdir()
    elsewhere.chmod(0o555)  # a read-only current folder must not matter (root writes there anyway)
    try:
        res = runner.invoke(app, ["eval", str(trained_run), "--split", "train", "--json"])
    finally:
        elsewhere.chmod(0o755)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chars"] > 0
    assert list(elsewhere.iterdir()) == []
    assert len(list((tmp_path / "runs" / ".cache").iterdir())) == 1


def test_eval_of_a_run_that_recorded_no_cache_uses_the_one_beside_it(tmp_path, trained_run, monkeypatch):
    config = trained_run / "config.yaml"
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["data"]["cache"] = None  # as runs made before the cache was recorded
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "runs" / "r")
    from charrnn.run.checkpoint import load_checkpoint, save_checkpoint

    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(trained_run / "checkpoints" / name)
        state["config"]["data"]["cache"] = None
        save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")},
                        trained_run / "checkpoints" / name)
    res = runner.invoke(app, ["eval", "checkpoints/best.pt", "--split", "train", "--json"])
    assert res.exit_code == 0, res.output
    assert not (trained_run / "runs").exists() and (tmp_path / "runs" / ".cache").is_dir()


def test_eval_data_uses_the_runs_vocabulary_and_cache(tmp_path, trained_run):
    other = tmp_path / "other.txt"
    other.write_text("abcabd\n" * 3, encoding="utf-8")
    before = set((tmp_path / "runs" / ".cache").iterdir())
    res = runner.invoke(app, ["eval", str(trained_run), "--data", str(other), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chars"] == len("abcabd\n" * 3) - 1
    (entry,) = set((tmp_path / "runs" / ".cache").iterdir()) - before  # encoded beside the run, memory-mapped
    assert json.loads((entry / "meta.json").read_text())["chars"] == list("\nabcd")  # the run's vocabulary


@pytest.mark.parametrize(("text", "fragments"), [
    ("abcé", ["character 'é' in", "other.txt", "not in the model's vocabulary of 5 characters"]),
    ("a", ["holds 1 character", "at least 2"]),
])
def test_eval_data_that_cannot_be_scored_is_one_line(tmp_path, trained_run, text, fragments):
    other = tmp_path / "other.txt"
    other.write_text(text, encoding="utf-8")
    one_line_error(runner.invoke(app, ["eval", str(trained_run), "--data", str(other)]), *fragments)

