"""Models that learn: every cell and encoding reproduces ihello; the bundled configs work end to end."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.trained import model_from_checkpoint
from charrnn.training.loop import train

runner = CliRunner()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_every_cell_and_encoding_learns_ihello(make_config, cell, encoding):
    cfg = make_config(model={"cell": cell, "encoding": encoding, "embedding_dim": 8, "hidden_size": 24},
                      train={"max_steps": 150, "eval_every": 150, "checkpoint_every": 150})
    result = train(cfg, quiet=True)
    assert result.val.accuracy == 1.0
    model, vocab, _ = model_from_checkpoint(load_checkpoint(resolve_checkpoint(result.run_dir, "best")))
    text = sample_text(model, vocab, prime="h", length=6, opts=SamplingOptions(greedy=True))[0]
    assert text == "hihello"


def test_training_is_deterministic_for_a_seed(make_config, tmp_path):
    cfg = make_config(model={"cell": "gru"}, train={"max_steps": 15, "batch_size": 2})
    a = train(cfg, run_dir=tmp_path / "a", quiet=True)
    b = train(cfg, run_dir=tmp_path / "b", quiet=True)
    assert a.val.loss == b.val.loss


def test_run_folder_layout(make_config):
    cfg = make_config(log={"tensorboard": True})
    result = train(cfg, quiet=True)
    root = result.run_dir
    assert (root / "config.yaml").is_file() and (root / "vocab.json").is_file()
    assert (root / "checkpoints" / "last.pt").is_file() and (root / "checkpoints" / "best.pt").is_file()
    assert list(root.glob("events.out.tfevents.*"))
    lines = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [10, 20]
    assert set(lines[0]) == {"step", "train_loss", "val_loss", "val_bpc", "val_accuracy", "lr", "chars_per_sec",
                             "elapsed_s"}
    assert math.isclose(lines[-1]["val_bpc"], lines[-1]["val_loss"] / math.log(2))


def test_stateful_batching_learns_a_longer_text(make_config):
    text = "the quick brown fox jumps over the lazy dog. " * 20
    cfg = make_config(text=text, model={"cell": "lstm", "encoding": "embedding", "embedding_dim": 16,
                                        "hidden_size": 48},
                      train={"batching": "stateful", "batch_size": 4, "seq_length": 16, "max_steps": 200,
                             "lr": 0.01, "eval_every": 200, "checkpoint_every": 200})
    result = train(cfg, quiet=True)
    assert result.val.accuracy > 0.95


def test_time_budget_stops_training(make_config):
    cfg = make_config(train={"max_steps": None, "time_budget": 1.0, "eval_every": 10**6})
    result = train(cfg, quiet=True)
    assert result.stopped_by == "time_budget"
    assert 1.0 <= result.elapsed_s < 10 and result.step > 1


def test_bundled_ihello_and_alphabet_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    runs = tmp_path / "runs"
    for name in ("ihello", "alphabet"):
        res = runner.invoke(app, ["train", "--config", f"configs/{name}.yaml", "--set", f"log.dir={runs}", "-q"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sample", str(runs / "ihello"), "--prime", "h", "--length", "6", "--greedy"])
    assert res.exit_code == 0 and res.stdout == "hihello\n"
    res = runner.invoke(app, ["sample", str(runs / "alphabet"), "--prime", "a", "--length", "25", "--greedy"])
    assert res.stdout == "abcdefghijklmnopqrstuvwxyz\n"
    res = runner.invoke(app, ["eval", str(runs / "alphabet"), "--split", "train", "--json"])
    assert res.exit_code == 0
    metrics = json.loads(res.stdout)
    assert metrics["accuracy"] == 1.0 and metrics["chars"] == 25
    assert set(metrics) == {"loss", "bpc", "perplexity", "accuracy", "chars"}
    res = runner.invoke(app, ["info", str(runs / "ihello")])
    assert res.exit_code == 0
    assert "rnn.weight_ih_l0" in res.stdout and "[128, 5]" in res.stdout and "5,157" in res.stdout


def test_python_dash_m_entry_point(tmp_path):
    res = subprocess.run([sys.executable, "-m", "charrnn", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "120"})
    assert res.returncode == 0
    for command in ("train", "sample", "eval", "info"):
        assert command in res.stdout
