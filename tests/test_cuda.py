"""GPU training with mixed precision; skipped where no CUDA device is present."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.data.corpus import open_corpus
from charrnn.evaluate import evaluate
from charrnn.run.checkpoint import load_checkpoint
from charrnn.sampling import SamplingOptions, sample_text
from charrnn.trained import model_from_checkpoint
from charrnn.training.loop import train

runner = CliRunner()

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TEXT = "hello world, hello charrnn. " * 8


def cuda_run(make_config, **train_overrides):
    cfg = make_config(TEXT, model={"cell": "lstm", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 32},
                      train={"device": "cuda", "max_steps": 40, "eval_every": 20, "batch_size": 8, "seq_length": 16,
                             **train_overrides})
    return train(cfg, quiet=True)


@pytest.mark.parametrize("precision", [
    "fp16",
    pytest.param("bf16", marks=pytest.mark.skipif(torch.cuda.is_available() and not torch.cuda.is_bf16_supported(),
                                                  reason="bf16 needs compute capability 8.0+")),
])
@pytest.mark.parametrize("batching", ["random", "stateful"])
def test_tiny_model_trains_on_cuda_in_mixed_precision(make_config, precision, batching):
    result = cuda_run(make_config, precision=precision, batching=batching)
    assert math.isfinite(result.val.loss) and result.val.loss < math.log(len(set(TEXT)))
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")  # (load_checkpoint maps to CPU)
    assert "cuda" in state["rng"]  # the CUDA generator's state is saved only when the run trained on CUDA
    assert all(t.dtype == torch.float32 for t in state["model"].values())  # fp32 master weights
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # fp16 trains through the GradScaler, whose state is checkpointed


def test_compile_on_cuda_trains(make_config):
    result = cuda_run(make_config, compile=True, max_steps=10, eval_every=10)
    assert math.isfinite(result.val.loss)


def test_load_model_puts_the_model_on_the_gpu(make_config):
    result = cuda_run(make_config, max_steps=4, eval_every=4)
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    model, _, _ = model_from_checkpoint(last, torch.device("cuda"))
    assert {p.device.type for p in model.parameters()} == {"cuda"}


@pytest.mark.parametrize("trained_in", ["fp16", "bf16"])
def test_a_gpu_run_samples_and_evaluates_on_cuda_and_on_cpu(make_config, monkeypatch, trained_in):
    """GPU-trained (mixed precision) -> eval and sample on CUDA and on CPU with no option: the same numbers
    (fp32 on both, to 1e-4) and the same greedy text."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN's LSTM would round inputs to TF32
    if trained_in == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("bf16 needs compute capability 8.0+")
    run = str(cuda_run(make_config, precision=trained_in).run_dir)
    results = {}
    for device in ("cuda", "cpu"):
        res = runner.invoke(app, ["eval", run, "--split", "train", "--json", "--device", device])
        assert res.exit_code == 0, res.output
        results[device] = json.loads(res.stdout)
        res = runner.invoke(app, ["sample", run, "--prime", "hello", "--length", "40", "--greedy", "--device", device])
        assert res.exit_code == 0, res.output
        results[device]["sample"] = res.stdout
    assert results["cuda"]["loss"] == pytest.approx(results["cpu"]["loss"], abs=1e-4)
    assert results["cuda"]["chars"] == results["cpu"]["chars"]
    assert results["cuda"]["sample"] == results["cpu"]["sample"]
    state = load_checkpoint(f"{run}/checkpoints/best.pt")
    model, vocab, cfg = model_from_checkpoint(state)
    expected = evaluate(model, open_corpus(cfg, vocab).splits(0.0, 0.0)["train"])
    assert results["cpu"]["loss"] == pytest.approx(expected.loss, abs=1e-4)
    greedy = sample_text(model, vocab, prime="hello", length=40, opts=SamplingOptions(greedy=True))[0]
    assert results["cpu"]["sample"] == greedy + "\n"


@pytest.mark.parametrize("precision", ["fp16", "bf16", "auto"])
def test_eval_and_sample_on_cuda_in_mixed_precision(make_config, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("bf16 needs compute capability 8.0+")
    run = str(cuda_run(make_config, max_steps=20).run_dir)
    fp32 = json.loads(runner.invoke(app, ["eval", run, "--json", "--split", "train", "--device", "cuda"]).stdout)
    res = runner.invoke(app, ["eval", run, "--json", "--split", "train", "--device", "cuda", "--precision", precision])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["loss"] == pytest.approx(fp32["loss"], abs=0.05)
    res = runner.invoke(app, ["sample", run, "--length", "50", "--seed", "0", "--device", "cuda",
                              "--precision", precision])
    assert res.exit_code == 0, res.output
    assert len(res.stdout) > 50
