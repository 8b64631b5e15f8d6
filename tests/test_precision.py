"""Mixed precision and torch.compile on CPU: bf16 autocast where this CPU can run it, and a clear error
where it cannot; train.compile explains itself instead of compiling.

oneDNN's bf16 LSTM needs avx512_bf16/AMX; on an AVX2 CPU it fails deep inside the LSTM, so charrnn refuses
bf16 LSTMs there up front. GRU and RNN run on ATen's own kernels, which take bf16 on any CPU.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

import charrnn.device as device_module
from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn.data.corpus import open_corpus
from charrnn.device import cpu_runs_bf16_lstm, inference_precision, native_cpu_bf16, resolve_precision
from charrnn.errors import UserError
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_checkpoint, save_checkpoint
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.trained import model_from_checkpoint
from charrnn.training.loop import train

CPU = torch.device("cpu")
TEXT = "hello world, hello charrnn. " * 8


def bf16_run(make_config, cell: str, batching: str = "random"):
    cfg = make_config(TEXT, model={"cell": cell, "hidden_size": 16},
                      train={"precision": "bf16", "max_steps": 30, "eval_every": 30, "batch_size": 4,
                             "seq_length": 8, "batching": batching})
    return train(cfg, quiet=True)


@pytest.mark.skipif(not cpu_runs_bf16_lstm(), reason="oneDNN has no bf16 LSTM on this CPU (no AVX-512)")
def test_bf16_lstm_trains_on_a_cpu_with_native_bf16(make_config):
    result = bf16_run(make_config, "lstm")
    assert math.isfinite(result.val.loss) and result.val.loss < math.log(len(set(TEXT)))


@pytest.mark.parametrize(("cell", "batching"), [("gru", "random"), ("rnn", "stateful")])
def test_bf16_gru_and_rnn_train_on_any_cpu(make_config, cell, batching):
    # stateful: the RNN's carried hidden state comes back in bf16 and must feed the next step and checkpoints.
    result = bf16_run(make_config, cell, batching)
    assert math.isfinite(result.val.loss) and result.val.loss < math.log(len(set(TEXT)))  # it learned something


@pytest.mark.skipif(cpu_runs_bf16_lstm(), reason="this CPU runs bf16 LSTMs")
def test_bf16_lstm_on_a_cpu_without_native_bf16_is_a_one_line_usage_error(make_config, tmp_path):
    cfg = make_config(TEXT, train={"precision": "bf16"})
    config_file = tmp_path / "bf16.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", "--config", str(config_file), "-q"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bf16 is not supported for model.cell lstm" in lines[0], res.stderr
    assert not (tmp_path / "runs" / cfg.name).exists()  # refused before the run folder was made


def test_explicit_precision_choices_on_cpu():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU, "gru") == "bf16"
    with pytest.raises(UserError, match="train.precision fp16 needs a GPU"):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: native)
    for cell in ("lstm", "gru", "rnn"):
        assert resolve_precision("auto", CPU, cell) == expected
        assert inference_precision("auto", CPU, cell) == expected


@pytest.mark.parametrize(("flags", "oneDNN", "native"), [
    ({"avx2", "avx512f", "avx512bw", "avx512vl"}, True, False),  # plain AVX-512: oneDNN emulates bf16, 3x slower
    ({"avx512f", "avx512_bf16"}, True, True), ({"amx_bf16", "amx_tile"}, True, True),
    ({"fp", "asimd", "bf16"}, True, True),  # Arm's Features line
    ({"avx2", "fma"}, False, False), (None, True, True), (None, False, False),  # no /proc/cpuinfo: oneDNN decides
])
def test_native_bf16_is_read_from_the_cpu_flags_not_from_onednns_check(monkeypatch, flags, oneDNN, native):
    """oneDNN's check says yes on plain AVX-512, where auto then trained in emulated bf16 at a third of fp32's speed."""
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(device_module, "cpu_runs_bf16_lstm", lambda: oneDNN)
    assert native_cpu_bf16() is native
    assert resolve_precision("auto", CPU, "lstm") == ("bf16" if native else "fp32")


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"),
                                                      ((8, 6), "bf16"), ((9, 0), "bf16")])
def test_auto_on_cuda_is_bf16_from_compute_capability_8(monkeypatch, capability, expected):
    """No GPU here: the capability is mocked. Older GPUs may emulate bf16 (slower than fp32): auto keeps fp32."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts as support
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda, "lstm") == expected
    assert inference_precision("auto", cuda, "lstm") == expected
    assert resolve_precision("fp16", cuda) == "fp16"  # fp16 only when asked, on any GPU


def test_inference_precision_is_the_commands_choice(monkeypatch):
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: False)
    monkeypatch.setattr(device_module, "cpu_runs_bf16_lstm", lambda: False)  # an AVX2-only CPU
    assert inference_precision("fp32", CPU, "lstm") == "fp32"
    assert inference_precision("bf16", CPU, "gru") == "bf16"
    with pytest.raises(UserError, match="--precision fp16 needs a GPU"):
        inference_precision("fp16", CPU, "gru")
    with pytest.raises(UserError, match="--precision bf16 is not supported for model.cell lstm"):
        inference_precision("bf16", CPU, "lstm")
    with pytest.raises(UserError, match="--precision must be one of auto, fp32, bf16, fp16"):
        inference_precision("fp8", CPU, "lstm")


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("prec")
    cfg = tiny_config(tmp, TEXT, data={"val_fraction": 0.2}, train={"max_steps": 20, "batch_size": 4,
                                                                     "seq_length": 8})
    return train(cfg, quiet=True).run_dir


def _retagged(run, tmp_path, precision):
    """The run's best checkpoint, its config saying it was trained in `precision` (fp32 weights, as always)."""
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    state["config"]["train"]["precision"] = precision
    path = tmp_path / f"{precision}.pt"
    save_checkpoint(state, path)
    return path, state


@pytest.mark.parametrize("trained_in", ["fp16", "bf16"])
def test_a_run_trained_in_fp16_or_bf16_evaluates_and_samples_on_cpu(fp32_run, tmp_path, monkeypatch, trained_in):
    """eval used to reuse train.precision: 'fp16 needs a GPU' (and bf16 LSTM on a CPU without native bf16)."""
    monkeypatch.setattr(device_module, "native_cpu_bf16", lambda: False)  # the bf16 LSTM case fails without it
    monkeypatch.setattr(device_module, "cpu_runs_bf16_lstm", lambda: False)
    path, state = _retagged(fp32_run, tmp_path, trained_in)
    res = CliRunner().invoke(app, ["eval", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    model, vocab, cfg = model_from_checkpoint(state)
    ids = open_corpus(cfg, vocab).splits(cfg.data.val_fraction, cfg.data.test_fraction)["val"]
    expected = evaluate(model, ids, precision="fp32")
    assert got["chars"] == expected.chars == len(ids) - 1
    assert got["loss"] == pytest.approx(expected.loss, abs=1e-4)
    assert got["accuracy"] == pytest.approx(expected.accuracy, abs=1e-4)
    res = CliRunner().invoke(app, ["sample", str(path), "--prime", "hello", "--length", "20", "--greedy"])
    assert res.exit_code == 0, res.output
    greedy = sample_text(model, vocab, prime="hello", length=20, opts=SamplingOptions(greedy=True))[0]
    assert res.stdout == greedy + "\n"


def test_eval_and_sample_run_in_the_precision_asked_for(fp32_run, tmp_path):
    """--precision bf16 really runs bf16 autocast (GRU: any CPU): the loss moves a little off the fp32 one."""
    state = load_checkpoint(fp32_run / "checkpoints" / "best.pt")
    state["config"]["model"]["cell"] = "gru"
    torch.manual_seed(0)
    model = CharRNN(len(state["vocab"]), ModelConfig(**state["config"]["model"]))
    state["model"] = model.state_dict()
    path = tmp_path / "gru.pt"
    save_checkpoint(state, path)
    losses = {}
    for precision in ("fp32", "bf16"):
        res = CliRunner().invoke(app, ["eval", str(path), "--json", "--precision", precision])
        assert res.exit_code == 0, res.output
        losses[precision] = json.loads(res.stdout)["loss"]
        res = CliRunner().invoke(app, ["sample", str(path), "--length", "5", "--seed", "0", "--precision", precision])
        assert res.exit_code == 0, res.output
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.05)
    line = CliRunner().invoke(app, ["eval", str(path), "--precision", "fp16"])
    assert line.exit_code == 2 and "--precision fp16 needs a GPU" in line.stderr


def test_compile_on_cpu_is_skipped_with_a_one_line_note(make_config, capsys):
    cfg = make_config(TEXT, train={"compile": True, "max_steps": 2, "eval_every": 2})
    result = train(cfg, quiet=False)  # compiling would take ~20 s here; the note says why it does not
    assert math.isfinite(result.val.loss)
    notes = [line for line in capsys.readouterr().err.splitlines() if "train.compile" in line]
    assert len(notes) == 1 and "ignored on CPU" in notes[0]
