"""Each user mistake ends in one clear line on stderr and exit code 2, with no traceback."""

import pytest
from conftest import REPO, one_line_error
from typer.testing import CliRunner

from charrnn.cli import app

runner = CliRunner()


@pytest.fixture
def cfg_file(tmp_path):
    def write(body: str):
        path = tmp_path / "c.yaml"
        path.write_text(body, encoding="utf-8")
        return path

    return write


def train(*args, tmp_path):
    return runner.invoke(app, ["train", *args, "--set", f"log.dir={tmp_path / 'runs'}", "-q"])


def test_missing_config_file(tmp_path):
    one_line_error(train("--config", str(tmp_path / "nope.yaml"), tmp_path=tmp_path), "config file not found")


def test_unknown_key_names_it_and_the_allowed_keys(tmp_path, cfg_file):
    res = train("--config", str(cfg_file("model:\n  hiden_size: 4\n")), tmp_path=tmp_path)
    one_line_error(res, "model.hiden_size", "hidden_size")


@pytest.mark.parametrize("override,fragment", [("train.lr=abc", "train.lr"), ("train.batch_size=-3", ">= 1"),
                                               ("model.cell=cnn", "rnn, gru, lstm")])
def test_wrong_type_or_range(tmp_path, override, fragment):
    res = train("--config", str(REPO / "configs/ihello.yaml"), "--set", override, tmp_path=tmp_path)
    one_line_error(res, fragment)


def test_data_file_missing_empty_or_not_utf8(tmp_path):
    config = str(REPO / "configs/ihello.yaml")
    one_line_error(train("--config", config, "--data", str(tmp_path / "none.txt"), tmp_path=tmp_path), "not found")
    (tmp_path / "empty.txt").write_bytes(b"")
    one_line_error(train("--config", config, "--data", str(tmp_path / "empty.txt"), tmp_path=tmp_path), "empty")
    (tmp_path / "bin.txt").write_bytes(b"hello \xff\xfe world")
    one_line_error(train("--config", config, "--data", str(tmp_path / "bin.txt"), tmp_path=tmp_path),
                   "not UTF-8", "byte offset 6")
    assert not (tmp_path / "runs" / "ihello").exists()


def test_bidirectional(tmp_path):
    res = train("--config", str(REPO / "configs/ihello.yaml"), "--set", "model.bidirectional=true", tmp_path=tmp_path)
    one_line_error(res, "bidirectional", "future")


def test_bad_run_path_and_prime(tmp_path):
    one_line_error(runner.invoke(app, ["sample", str(tmp_path / "nowhere")]), "neither a run folder nor a checkpoint")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "nowhere")]), "neither a run folder nor a checkpoint")
    res = train("--config", str(REPO / "configs/ihello.yaml"), "--set", "train.max_steps=5", tmp_path=tmp_path)
    assert res.exit_code == 0
    one_line_error(runner.invoke(app, ["sample", str(tmp_path / "runs/ihello"), "--prime", "hx"]), "'x'",
                   "vocabulary")


def test_existing_run_is_not_overwritten(tmp_path):
    args = ("--config", str(REPO / "configs/ihello.yaml"), "--set", "train.max_steps=5")
    assert train(*args, tmp_path=tmp_path).exit_code == 0
    one_line_error(train(*args, tmp_path=tmp_path), "--resume", "--overwrite")
    assert train(*args, "--overwrite", tmp_path=tmp_path).exit_code == 0
