"""Every config in configs/ trains on a fresh clone as it is: its corpus ships in data/, named relative to the
config file, so no --data is needed and the current folder does not matter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import load_config

runner = CliRunner()
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_the_configs_of_the_readme_are_there():
    names = {c.stem for c in CONFIGS}
    assert {"ihello", "alphabet", "shakespeare", "shakespeare-10min", "names"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_a_shipped_config_names_a_bundled_corpus(config):
    cfg = load_config(config)
    paths = [cfg.data.path] if isinstance(cfg.data.path, str) else cfg.data.path
    for path in paths:
        assert Path(path).resolve().parent == REPO / "data", path
        assert Path(path).is_file(), path
    assert "shared" not in config.read_text(encoding="utf-8")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_a_shipped_config_trains_with_no_data_flag_from_any_folder(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        res = runner.invoke(app, ["train", "--config", str(config), "--set", "train.time_budget=2",
                                  "--set", "log.tensorboard=false", "-q"])
    finally:
        torch.set_num_threads(1)  # a config's train.threads would change it for the whole test process
    assert res.exit_code == 0, res.output
    name = yaml.safe_load(config.read_text(encoding="utf-8"))["name"]
    assert (tmp_path / "runs" / name / "checkpoints" / "last.pt").is_file()
