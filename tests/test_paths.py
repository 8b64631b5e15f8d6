"""How charrnn reads the paths a user gives (docs/paths.md): a config file's inputs relative to the file, the
flags and the output folders relative to the current folder, `~` everywhere, any character (an emoji
included) in a path or run name, and hints that work as printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import load_config, read_config_file
from charrnn.paths import relative_to_folder, shown_path, user_path

runner = CliRunner()
QUICK = ["--set", "train.max_steps=5", "--set", "log.tensorboard=false", "-q"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of the test's own, so that ~ means a folder the test may write in."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture
def project(tmp_path):
    """A project folder: configs/c.yaml naming ../data/corpus.txt and ../runs/src (a run to fine-tune from)."""
    (tmp_path / "proj" / "configs").mkdir(parents=True)
    (tmp_path / "proj" / "data").mkdir()
    (tmp_path / "proj" / "data" / "corpus.txt").write_text("hello there, hello world. " * 4, encoding="utf-8")
    config = tmp_path / "proj" / "configs" / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "c", "data": {"path": "../data/corpus.txt", "val_fraction": 0.0},
                                      "model": {"hidden_size": 8, "num_layers": 1},
                                      "train": {"max_steps": 5, "seq_length": 8, "batch_size": 2,
                                                "device": "cpu"},
                                      "log": {"sample_every": 0, "tensorboard": False}}), encoding="utf-8")
    return config


def test_user_path_expands_home_and_leaves_an_unknown_user_alone(home):
    assert user_path("~/runs") == home / "runs"
    assert user_path("~no-such-user-xyz/runs") == Path("~no-such-user-xyz/runs")  # Path.expanduser raises here
    assert relative_to_folder("~/a.txt", Path("/cfg")) == str(home / "a.txt")
    assert relative_to_folder("a.txt", Path("/cfg")) == "/cfg/a.txt"
    assert relative_to_folder("/abs/a.txt", Path("/cfg")) == "/abs/a.txt"


def test_shown_path_is_relative_below_the_current_folder_and_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "runs" / "x") == "runs/x"
    assert shown_path("/elsewhere/runs/x") == "/elsewhere/runs/x"
    assert shown_path(tmp_path / "runs" / "my run") == "'runs/my run'"


def test_a_config_files_inputs_follow_the_file_and_its_outputs_the_current_folder(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = read_config_file(project)
    assert raw["data"]["path"] == str(project.parent / "../data/corpus.txt")
    cfg = load_config(project, ["log.dir=out"])
    assert Path(cfg.data.path).resolve() == (tmp_path / "proj" / "data" / "corpus.txt")
    assert cfg.log.dir == "out"  # relative to the current folder when the run starts
    cfg = load_config(project, ["data.path=mine.txt"])  # --set is a command-line path: the current folder's
    assert cfg.data.path == "mine.txt"


def test_a_list_of_paths_and_init_from_follow_the_file(tmp_path):
    config = tmp_path / "cfg" / "c.yaml"
    config.parent.mkdir()
    config.write_text("init_from: ../runs/src\ndata:\n  path: [a.txt, /abs/b.txt, ~/c.txt]\n", encoding="utf-8")
    raw = read_config_file(config)
    assert raw["init_from"] == str(config.parent / "../runs/src")
    assert raw["data"]["path"] == [str(config.parent / "a.txt"), "/abs/b.txt", str(user_path("~/c.txt"))]


def test_the_config_in_another_folder_trains_and_writes_under_the_current_folder(project, tmp_path, monkeypatch):
    """From another folder, `train --config /abs/.../c.yaml` reads the file's corpus and writes ./runs/NAME;
    the run's config.yaml records every path absolute, and the printed hint works from there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = runner.invoke(app, ["train", "--config", str(project), "--set", "train.max_steps=5"])
    assert res.exit_code == 0, res.output
    run = elsewhere / "runs" / "c"
    assert (run / "checkpoints" / "last.pt").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["path"] == str(tmp_path / "proj" / "data" / "corpus.txt")
    assert saved["log"]["dir"] == str(elsewhere / "runs") and saved["data"]["cache"] == str(elsewhere / "runs/.cache")
    assert "sample it: charrnn sample runs/c" in res.stderr
    assert runner.invoke(app, ["sample", "runs/c", "--length", "5"]).exit_code == 0
    monkeypatch.chdir(tmp_path)  # the recorded paths are absolute: a resume works from anywhere
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "--set", "train.max_steps=8", "-q"])
    assert res.exit_code == 0, res.output


def test_the_bundled_config_trains_from_another_folder(tmp_path, monkeypatch):
    """Issue 19: `cd elsewhere && charrnn train --config /path/to/charrnn/configs/ihello.yaml` said
    `data file not found: elsewhere/data/ihello.txt`."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--config", str(REPO / "configs" / "ihello.yaml"), *QUICK])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "ihello" / "checkpoints" / "last.pt").is_file()
    saved = yaml.safe_load((tmp_path / "runs" / "ihello" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["path"] == str(REPO / "data" / "ihello.txt")


def test_tilde_is_expanded_in_log_dir_run_dir_cache_init_from_and_run_arguments(home, tmp_path, monkeypatch):
    """Issue 24, item 6: `log.dir: ~/runs` wrote ./~/runs/ih while the cache went to $HOME/runs/.cache;
    `--run-dir '~/rd'` made a folder named ~; `--init-from ~/runs/x` failed."""
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "ihello.yaml")
    res = runner.invoke(app, ["train", "--config", config, "--set", "log.dir=~/runs", "--name", "ih", *QUICK[:2]])
    assert res.exit_code == 0, res.output
    assert (home / "runs" / "ih" / "checkpoints" / "last.pt").is_file() and (home / "runs" / ".cache").is_dir()
    assert not (tmp_path / "~").exists()
    hint = res.stderr.split("sample it: ")[1].split()
    assert runner.invoke(app, [hint[1], hint[2], "--length", "3"]).exit_code == 0  # the hint, as printed
    assert runner.invoke(app, ["sample", "~/runs/ih", "--length", "3"]).exit_code == 0
    res = runner.invoke(app, ["train", "--config", config, "--run-dir", "~/rd", "--set", "data.cache=~/cache",
                              *QUICK])
    assert res.exit_code == 0, res.output
    assert (home / "rd" / "checkpoints" / "last.pt").is_file() and (home / "cache").is_dir()
    res = runner.invoke(app, ["train", "--config", config, "--init-from", "~/runs/ih", "--name", "ft", *QUICK])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("flag,value", [("--data", "corpus🙂.txt"), ("--name", "run🙂"),
                                        ("--init-from", "src🙂/ih")])
def test_a_character_outside_the_bmp_in_a_path_or_name_trains(tmp_path, monkeypatch, flag, value):
    """Issue 24, item 9: json.dumps wrote 🙂 as a surrogate pair that YAML read back as two lone surrogates:
    `UnicodeEncodeError: surrogates not allowed` (and --init-from did not find the run)."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "data" / "ihello.txt", tmp_path / "corpus🙂.txt")
    config = str(REPO / "configs" / "ihello.yaml")
    if flag == "--init-from":
        assert runner.invoke(app, ["train", "--config", config, "--run-dir", "src🙂/ih", *QUICK]).exit_code == 0
    res = runner.invoke(app, ["train", "--config", config, flag, value, "--set", "log.dir=runs", *QUICK])
    assert res.exit_code == 0, res.output
    name = value if flag == "--name" else "ihello"
    saved = yaml.safe_load((tmp_path / "runs" / name / "config.yaml").read_text(encoding="utf-8"))
    recorded = {"--data": saved["data"]["path"], "--name": saved["name"], "--init-from": saved["init_from"]}[flag]
    assert "🙂" in recorded
    assert runner.invoke(app, ["info", f"runs/{name}"]).exit_code == 0

