"""Mixed precision and torch.compile on CPU: bf16 autocast where this CPU can run it, and a clear error
where it cannot; train.compile explains itself instead of compiling.

oneDNN's bf16 LSTM needs avx512_bf16/AMX; on an AVX2 CPU it fails deep inside the LSTM, so charrnn refuses
bf16 LSTMs there up front. GRU and RNN run on ATen's own kernels, which take bf16 on any CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.device import native_cpu_bf16, resolve_precision
from charrnn.errors import UserError
from charrnn.train import train

CPU = torch.device("cpu")
TEXT = "hello world, hello charrnn. " * 8


def bf16_run(make_config, cell: str, batching: str = "random"):
    cfg = make_config(TEXT, model={"cell": cell, "hidden_size": 16},
                      train={"precision": "bf16", "max_steps": 30, "eval_every": 30, "batch_size": 4,
                             "seq_length": 8, "batching": batching})
    return train(cfg, quiet=True)


@pytest.mark.skipif(not native_cpu_bf16(), reason="this CPU has no native bf16 (avx512_bf16/AMX) for oneDNN's LSTM")
def test_bf16_lstm_trains_on_a_cpu_with_native_bf16(make_config):
    result = bf16_run(make_config, "lstm")
    assert math.isfinite(result.val.loss) and result.val.loss < math.log(len(set(TEXT)))


@pytest.mark.parametrize(("cell", "batching"), [("gru", "random"), ("rnn", "stateful")])
def test_bf16_gru_and_rnn_train_on_any_cpu(make_config, cell, batching):
    # stateful: the RNN's carried hidden state comes back in bf16 and must feed the next step and checkpoints.
    result = bf16_run(make_config, cell, batching)
    assert math.isfinite(result.val.loss) and result.val.loss < math.log(len(set(TEXT)))  # it learned something


@pytest.mark.skipif(native_cpu_bf16(), reason="this CPU runs bf16 LSTMs")
def test_bf16_lstm_on_a_cpu_without_native_bf16_is_a_one_line_usage_error(make_config, tmp_path):
    cfg = make_config(TEXT, train={"precision": "bf16"})
    config_file = tmp_path / "bf16.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", "--config", str(config_file), "-q"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bf16 is not supported for model.cell lstm" in lines[0], res.stderr
    assert not (tmp_path / "runs" / cfg.name).exists()  # refused before the run folder was made


def test_precision_choices_on_cpu():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU, "gru") == ("bf16" if native_cpu_bf16() else "fp32")  # emulated bf16 is slow
    assert resolve_precision("bf16", CPU, "gru") == "bf16"
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        resolve_precision("fp16", CPU)


def test_compile_on_cpu_is_skipped_with_a_one_line_note(make_config, capsys):
    cfg = make_config(TEXT, train={"compile": True, "max_steps": 2, "eval_every": 2})
    result = train(cfg, quiet=False)  # compiling would take ~20 s here; the note says why it does not
    assert math.isfinite(result.val.loss)
    notes = [line for line in capsys.readouterr().err.splitlines() if "train.compile" in line]
    assert len(notes) == 1 and "ignored on CPU" in notes[0]
