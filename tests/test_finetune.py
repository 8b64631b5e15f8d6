"""Fine-tuning (`train --init-from`): a trained model's weights as the start of a new run on a related text."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml
from conftest import one_line_error, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn.data.cache import load_corpus
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training.finetune import extended_vocab, load_source_weights
from charrnn.training.loop import train
from charrnn.vocab import Vocab

runner = CliRunner()
SMALL = {"model": {"encoding": "embedding", "embedding_dim": 24, "hidden_size": 48},
         "train": {"seq_length": 24, "batch_size": 16, "lr": 0.01, "eval_every": 10, "checkpoint_every": 50}}


def sentences(words: list[str], n: int, end: str = ". ", seed: int = 0) -> str:
    rng = random.Random(seed)
    return end.join(rng.choice(words) for _ in range(n)) + end.strip() + "\n"


SOURCE = sentences(["the cat sat on the mat", "a cat ate a rat", "the rat sat on a hat", "that cat is fat"], 300)
RELATED = sentences(["a fat rat sat on the cat", "the hat is on a mat", "that rat ate the hat"], 150, seed=1)


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("source")
    cfg = tiny_config(tmp, SOURCE, data={"val_fraction": 0.2}, train={**SMALL["train"], "max_steps": 150},
                      model=SMALL["model"], name="source")
    return train(cfg, quiet=True).run_dir


def test_fine_tuning_starts_lower_and_reaches_a_val_loss_in_fewer_steps(source_run, tmp_path):
    assert set(RELATED) <= set(SOURCE)  # a related text: the source's characters, other sentences
    runs = {}
    for name, init in (("fresh", None), ("tuned", str(source_run))):
        (tmp_path / name).mkdir()
        cfg = tiny_config(tmp_path / name, RELATED, data={"val_fraction": 0.2}, model=SMALL["model"],
                          train={**SMALL["train"], "max_steps": 60}, name=name, init_from=init)
        runs[name] = train(cfg, quiet=True).run_dir
    tuned, fresh = metrics(runs["tuned"]), metrics(runs["fresh"])
    assert tuned[0]["step"] == 0  # a fine-tuned run is scored before its first step
    # The fresh model's loss at step 0, as it would have scored: the same seed, the same val split.
    cfg = tiny_config(tmp_path / "fresh", RELATED, data={"val_fraction": 0.2}, model=SMALL["model"])
    corpus = load_corpus(cfg.data.path, tmp_path / "cache")
    torch.manual_seed(cfg.seed)
    fresh_start = evaluate(CharRNN(len(corpus.vocab), cfg.model), corpus.splits(0.2, 0.0)["val"]).loss
    assert tuned[0]["val_loss"] < fresh_start - 1.0
    target = fresh[-1]["val_loss"]  # where the fresh model got to in 60 steps

    def first_step_at(lines):
        return next(line["step"] for line in lines if line["val_loss"] <= target)

    assert first_step_at(tuned) < first_step_at(fresh)
    saved = yaml.safe_load((runs["tuned"] / "config.yaml").read_text(encoding="utf-8"))
    assert saved["init_from"] == str((source_run / "checkpoints" / "best.pt").resolve())
    assert saved["model"] == yaml.safe_load((source_run / "config.yaml").read_text(encoding="utf-8"))["model"]
    last = load_checkpoint(runs["tuned"] / "checkpoints" / "last.pt")
    assert last["step"] == 60 and max(s["step"] for s in last["optimizer"]["state"].values()) == 60  # fresh Adam


def test_characters_new_in_the_corpus_are_added_and_sampled(source_run, tmp_path):
    text = sentences(["the dog sat on the log!", "a dog ate a frog!", "that dog is big!"], 150, end=" ")
    new = set(text) - set(SOURCE)
    assert new >= {"!", "d", "g"}
    res = runner.invoke(app, ["train", "--config", str(source_run / "config.yaml"), "--data",
                              str(write(tmp_path / "dogs.txt", text)), "--init-from", str(source_run),
                              "--set", f"log.dir={tmp_path / 'runs'}", "--set", "train.max_steps=80",
                              "--name", "dogs", "-q"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "dogs"
    chars = json.loads((run / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert chars == sorted(set(SOURCE) | set(text))
    res = runner.invoke(app, ["sample", str(run), "--prime", "the dog sat on the log", "--length", "12",
                              "--greedy"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("the dog sat on the log!")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("model", [
    {"encoding": "onehot", "cell": "gru"},
    {"encoding": "embedding", "embedding_dim": 8},
    {"encoding": "embedding", "embedding_dim": 16, "tie_weights": True},
])
def test_extended_model_computes_what_the_source_did_for_its_characters(model):
    cfg = ModelConfig(hidden_size=16, num_layers=2, **model)
    source_vocab, corpus_vocab = Vocab(list("acex")), Vocab(list("abcdf"))
    vocab = extended_vocab(source_vocab, corpus_vocab)
    assert vocab.chars == list("abcdefx")
    torch.manual_seed(0)
    source = CharRNN(len(source_vocab), cfg).eval()
    extended = CharRNN(len(vocab), cfg).eval()
    load_source_weights(extended, source.state_dict(), source_vocab, vocab)
    text = "aexcaxe"
    old_logits, _ = source(torch.from_numpy(source_vocab.encode(text))[None])
    new_logits, _ = extended(torch.from_numpy(vocab.encode(text))[None])
    kept = torch.from_numpy(vocab.encode("acex"))
    assert torch.allclose(new_logits[..., kept], old_logits, atol=1e-6)
    assert np.isfinite(new_logits.detach().numpy()).all()


def test_init_from_refusals_are_one_line_and_leave_no_run_folder(source_run, tmp_path):
    data = str(write(tmp_path / "t.txt", RELATED))
    empty_run = tmp_path / "untrained"
    empty_run.mkdir()
    base = ["train", "--config", str(source_run / "config.yaml"), "--data", data, "--set",
            f"log.dir={tmp_path / 'runs'}", "--name", "x", "-q"]
    one_line_error(runner.invoke(app, [*base, "--init-from", str(source_run), "--set", "model.hidden_size=64"]),
                   "model.hidden_size=64", "trained with 48")
    one_line_error(runner.invoke(app, [*base, "--init-from", str(empty_run)]), "--init-from", "has no best checkpoint")
    one_line_error(runner.invoke(app, [*base, "--init-from", str(tmp_path / "nowhere")]), "--init-from")
    one_line_error(runner.invoke(app, [*base, "--init-from", str(source_run), "--resume"]), "--init-from", "--resume")
    assert not (tmp_path / "runs" / "x").exists()
