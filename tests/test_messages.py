"""What a newcomer meets in their first hour (issue 19): a file that is no checkpoint named as what it is, a
bare run name that suggests runs/NAME, `info` that shows a line-break separator escaped, and no `-n` that
reads like "number of samples" but means the length."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, one_line_error
from typer.testing import CliRunner

from charrnn.cli import app

runner = CliRunner()
CONFIG = str(REPO / "configs" / "ihello.yaml")


@pytest.fixture
def run(tmp_path, monkeypatch):
    """runs/ih, trained for 5 steps, with the current folder the one that holds runs/."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--config", CONFIG, "--name", "ih", "--set", "train.max_steps=5",
                              "--set", "log.tensorboard=false", "-q"])
    assert res.exit_code == 0, res.output
    return tmp_path / "runs" / "ih"


@pytest.mark.parametrize("name,what", [("config.yaml", "a YAML file (the run's config)"),
                                       ("vocab.json", "a JSON file (the run's vocabulary)"),
                                       ("metrics.jsonl", "a JSON file (the run's metrics)")])
def test_a_file_of_the_run_is_named_and_the_run_folder_suggested(run, name, what):
    """`charrnn sample runs/x/config.yaml` said `refused to load ...: it is not a plain-tensor charrnn checkpoint
    (it holds pickled objects)`: a security alarm for a YAML file."""
    for command in ("sample", "eval", "info"):
        line = one_line_error(runner.invoke(app, [command, f"runs/ih/{name}"]), what, "not a checkpoint",
                              "pass the run folder (runs/ih)")
        assert "pickled" not in line


@pytest.mark.parametrize("body,suffix,what", [("name: x\n", ".yaml", "a YAML file"),
                                              ('{"a": 1}', ".txt", "a JSON file"),
                                              ("to be or not to be\n", ".txt", "a text file"),
                                              ("", ".pt", "an empty file")])
def test_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, monkeypatch, body, suffix, what):
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"f{suffix}").write_text(body, encoding="utf-8")
    one_line_error(runner.invoke(app, ["sample", f"f{suffix}"]), f"f{suffix} is {what}, not a checkpoint",
                   "pass a run folder (e.g. runs/ihello)")


def test_a_checkpoint_with_pickled_objects_is_still_refused_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": object()}, tmp_path / "evil.pt")
    one_line_error(runner.invoke(app, ["sample", "evil.pt"]), "refused to load", "pickled objects")


def test_a_bare_run_name_suggests_the_run_folder(run):
    """`charrnn sample x` where runs/x exists said only `x is neither a run folder nor a checkpoint file`."""
    for command in ("sample", "eval", "info", "inspect"):
        one_line_error(runner.invoke(app, [command, "ih"]), "ih is neither a run folder nor a checkpoint file",
                       "did you mean runs/ih?")
    one_line_error(runner.invoke(app, ["sample", "nothing"]), "neither", "pass a run folder, e.g. runs/ihello")


def test_a_bare_name_for_init_from_and_resume_suggests_the_run_under_log_dir(run):
    res = runner.invoke(app, ["train", "--config", CONFIG, "--init-from", "ih", "--name", "ft", "-q"])
    one_line_error(res, "--init-from ih", "did you mean runs/ih?")
    res = runner.invoke(app, ["train", "--config", CONFIG, "--init-from", "ih", "--name", "ft", "-q",
                              "--set", "log.dir=elsewhere"])
    one_line_error(res, "--init-from ih", "pass a run folder")  # the config's log.dir holds no run ih
    res = runner.invoke(app, ["train", "--resume", "--run-dir", "ih", "-q"])
    one_line_error(res, "cannot resume", "did you mean runs/ih?")


def test_info_shows_the_separator_and_other_control_characters_escaped(run):
    """`charrnn info` printed `separator=` followed by a raw line break."""
    res = runner.invoke(app, ["info", "runs/ih"])
    assert res.exit_code == 0, res.output
    assert 'separator="\\n"' in res.stdout
    res = runner.invoke(app, ["train", "--config", CONFIG, "--name", "tab", "--set", "train.max_steps=2", "-q",
                              "--set", 'data.separator="\\t\\x01"', "--set", "log.tensorboard=false"])
    assert res.exit_code == 0, res.output
    out = runner.invoke(app, ["info", "runs/tab"]).stdout
    assert 'separator="\\t\\x01"' in out and "\t" not in out and "\x01" not in out


def test_n_is_no_longer_a_short_flag_for_length(run):
    """`sample -n 2 --length 30` took -n as --length, silently overridden; -n reads like "number of samples"."""
    one_line_error(runner.invoke(app, ["sample", "runs/ih", "-n", "2", "--length", "30"]), "-n")
    one_line_error(runner.invoke(app, ["inspect", "runs/ih", "-n", "2"]), "-n")
    res = runner.invoke(app, ["sample", "runs/ih", "--num-samples", "2", "--length", "5", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["samples"]) == 2
