"""The Python API (`import charrnn`): load, Model.sample/stream/evaluate/step, train; equal to the CLI's answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO
from typer.testing import CliRunner

import charrnn
from charrnn.cli import app
from charrnn.config import config_from_dict
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.trained import Model
from charrnn.vocab import Vocab

runner = CliRunner()
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def ihello_runs(tmp_path_factory):
    """The folder the ihello config was trained in (its run is runs/ihello there), from the config's own path."""
    where = tmp_path_factory.mktemp("ihello")
    run = charrnn.train(REPO / "configs" / "ihello.yaml", data=REPO / "data" / "ihello.txt",
                        log__dir=str(where / "runs"), log__tensorboard=False, quiet=True)
    assert run.run_dir == where / "runs" / "ihello" and run.step == 300
    return where


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """A small model trained from a dict on the start of the bundled Shakespeare, and a text it never saw."""
    where = tmp_path_factory.mktemp("play")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    (where / "train.txt").write_text(text[:20_000], encoding="utf-8")
    (where / "held_out.txt").write_text(text[20_000:22_000], encoding="utf-8")
    config = {"name": "play", "data": {"path": str(where / "train.txt"), "val_fraction": 0.1},
              "model": {"cell": "gru", "hidden_size": 48, "num_layers": 1, "embedding_dim": 16},
              "train": {"seq_length": 32, "batch_size": 8, "max_steps": 40, "eval_every": 20, "device": "cpu"},
              "log": {"dir": str(where / "runs"), "tensorboard": False, "sample_every": 0}}
    run = charrnn.train(config, quiet=True)
    assert run.step == 40 and run.stopped_by == "max_steps" and len(run.history()) == 2
    return run.run_dir, where / "held_out.txt"


def cli(*args: str) -> str:
    res = runner.invoke(app, [*args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_the_classic_exercise_from_python(ihello_runs, monkeypatch):
    monkeypatch.chdir(ihello_runs)
    assert charrnn.load("runs/ihello").sample("h", 6, greedy=True) == "hihello"


def test_a_sample_is_what_the_cli_prints_for_the_same_options(play):
    run, _ = play
    m = charrnn.load(run)
    text = m.sample("ROMEO:", 300, seed=7, temperature=0.8, top_k=20)
    assert text.startswith("ROMEO:") and len(text) == 306
    assert cli("sample", str(run), "--prime", "ROMEO:", "--length", "300", "--seed", "7", "--temperature", "0.8",
               "--top-k", "20") == text + "\n"
    assert cli("sample", str(run), "--length", "40", "--greedy") == m.sample(length=40, greedy=True) + "\n"
    texts = m.sample("First", 120, seed=3, top_p=0.9, num_samples=3, stop="\n")
    shown = json.loads(cli("sample", str(run), "--prime", "First", "--length", "120", "--seed", "3", "--top-p", "0.9",
                           "--num-samples", "3", "--stop", "\\n", "--json"))["samples"]
    assert shown == texts and len(texts) == 3 and all("\n" not in t for t in texts)
    assert "".join(m.stream("ROMEO:", 300, seed=7, temperature=0.8, top_k=20)) == text


def test_evaluate_is_what_cli_eval_reports(play):
    run, held_out = play
    metrics = charrnn.load(run).evaluate(held_out.read_text(encoding="utf-8"))
    reported = json.loads(cli("eval", str(run), "--data", str(held_out), "--json"))
    assert reported["chars"] == metrics.chars == 1999
    for key in ("loss", "bpc", "perplexity", "accuracy"):
        assert getattr(metrics, key) == pytest.approx(reported[key], abs=1e-6)


def test_train_from_a_path_with_overrides_in_either_spelling(tmp_path):
    run = charrnn.train(REPO / "configs" / "ihello.yaml", data=REPO / "data" / "ihello.txt", train__max_steps=50,
                        log__dir=str(tmp_path / "runs"), quiet=True, **{"train.lr": 0.01, "log.tensorboard": False})
    assert run.step == 50
    saved = yaml.safe_load((run.run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["lr"] == 0.01 and saved["train"]["max_steps"] == 50 and saved["log"]["tensorboard"] is False
    assert run.load(checkpoint="last").state["step"] == 50


def test_train_takes_a_config_object_and_refuses_what_it_cannot_use(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "ihello.yaml").read_text(encoding="utf-8"))
    raw["data"]["path"] = str(REPO / "data" / "ihello.txt")
    raw["log"] = {"dir": str(tmp_path / "runs"), "tensorboard": False}
    run = charrnn.train(config_from_dict(raw), train__max_steps=10, name="obj", quiet=True)
    assert run.run_dir == tmp_path / "runs" / "obj" and run.step == 10
    with pytest.raises(UserError, match="train.lrr"):
        charrnn.train(raw, train__lrr=0.1)
    with pytest.raises(UserError, match="a YAML file's path, a dict or a charrnn Config"):
        charrnn.train(42)
    with pytest.raises(UserError, match="already exists|--overwrite|overwrite"):
        charrnn.train(raw, train__max_steps=10, name="obj", quiet=True)


def model_of(cell: str, encoding: str = "embedding", layers: int = 2, seed: int = 0) -> Model:
    """A Model around a freshly initialised network (no run folder needed to check the step path)."""
    torch.manual_seed(seed)
    vocab = Vocab(list("ehilo"))
    cfg = config_from_dict({"model": {"cell": cell, "encoding": encoding, "hidden_size": 12, "num_layers": layers,
                                      "embedding_dim": 6}})
    net = CharRNN(len(vocab), cfg.model).eval()
    return Model(net=net, vocab=vocab, config=cfg, run=REPO, checkpoint=REPO, state={"step": 0},
                 device=torch.device("cpu"))


@pytest.mark.parametrize("cell,encoding", [("rnn", "onehot"), ("gru", "embedding"), ("lstm", "onehot")])
def test_step_by_step_equals_the_networks_forward(cell, encoding):
    m = model_of(cell, encoding)
    text = "hihello"
    logits, hidden = m.net(torch.as_tensor(m.vocab.encode(text))[None])
    state = None
    for t, ch in enumerate(text):
        probs, state = m.step(ch if t % 2 else int(m.vocab.encode(ch)[0]), state)  # a character or its id
        torch.testing.assert_close(probs, torch.softmax(logits[0, t], -1), atol=1e-6, rtol=1e-5)
    expected = hidden if isinstance(hidden, tuple) else (hidden,)
    got = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert state.h.shape == (2, 12) and (state.c is None) == (cell != "lstm")
    assert set(state.gates) == {"rnn": set(), "gru": {"reset", "update"}, "lstm": {"input", "forget", "output"}}[cell]


def test_the_gates_a_step_reports_are_the_lstm_equations():
    m = model_of("lstm", "onehot", layers=1)
    rnn = m.net.rnn
    _, state = m.step("h")
    _, after = m.step("i", state)
    x = torch.nn.functional.one_hot(torch.tensor(m.vocab.index["i"]), len(m.vocab)).float()
    pre = rnn.weight_ih_l0 @ x + rnn.bias_ih_l0 + rnn.weight_hh_l0 @ state.h[0] + rnn.bias_hh_l0
    i, f, g, o = pre.detach().chunk(4)
    for name, value in (("input", i), ("forget", f), ("output", o)):
        torch.testing.assert_close(after.gates[name][0], torch.sigmoid(value), atol=1e-6, rtol=1e-5)
    c = torch.sigmoid(f) * state.c[0] + torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(after.c[0], c, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(after.h[0], torch.sigmoid(o) * torch.tanh(c), atol=1e-6, rtol=1e-5)


def test_start_is_zeros_and_step_sees_weights_changed_after_loading():
    m = model_of("gru")
    assert not m.start().h.any()
    before, _ = m.step("h")
    with torch.no_grad():
        m.net.head.bias[m.vocab.index["o"]] += 5.0
    after, _ = m.step("h")
    assert after[m.vocab.index["o"]] > before[m.vocab.index["o"]]


def test_mistakes_are_user_errors_that_say_what_to_do():
    m = model_of("lstm")
    with pytest.raises(UserError, match="one character at a time"):
        m.step("hi")
    with pytest.raises(UserError, match="outside the vocabulary"):
        m.step(99)
    with pytest.raises(UserError, match="not in the model's vocabulary"):
        m.sample("xyz", 5)
    with pytest.raises(UserError, match="at least 2 characters"):
        m.evaluate("h")
    with pytest.raises(UserError, match="temperature"):
        m.sample("h", 5, temperature=0)
    with pytest.raises(UserError, match="one sample"):
        next(m.stream("h", 5, num_samples=2))


def test_evaluate_takes_ids_too_and_sample_stream_reports_what_it_drew():
    m = model_of("gru")
    ids = m.vocab.encode("hihellohello")
    assert m.evaluate(ids) == m.evaluate("hihellohello")
    stream = m.sample_stream("h", 10, seed=0, num_samples=2)
    pieces = list(stream)
    assert stream.generated == 20 and stream.stopped == [False, False]
    assert ["".join(p[k] for p in pieces) for k in range(2)] == stream.texts()


def test_the_api_is_listed_and_each_function_documents_an_example():
    assert set(charrnn.__all__) <= set(dir(charrnn))
    for name in ("load", "train", "Model", "State", "Config", "Metrics", "Vocab", "UserError"):
        assert name in charrnn.__all__ and getattr(charrnn, name) is not None
    for fn in (charrnn.load, charrnn.train, Model.sample, Model.stream, Model.sample_stream, Model.evaluate,
               Model.step, Model.start):
        assert "Example" in fn.__doc__ and ">>>" in fn.__doc__, fn.__name__
    with pytest.raises(AttributeError):
        charrnn.no_such_name  # noqa: B018


def test_import_charrnn_is_light():
    """Neither `import charrnn` nor loading a model imports the training loop or TensorBoard; the bare import
    does not even import torch (the CLI starts without it)."""
    code = ("import sys, charrnn\n"
            "bare = 'torch' in sys.modules\n"
            "charrnn.load, charrnn.Model, charrnn.State\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('charrnn.training', 'tensorboard', "
            "'torch.utils.tensorboard', 'charrnn.cli')))\n"
            "print(bare, heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False []"
