"""GPU training with mixed precision; skipped where no CUDA device is present."""

from __future__ import annotations

import math

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.train import train

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
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in state["model"].values())  # fp32 master
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # fp16 trains through the GradScaler, whose state is checkpointed


def test_compile_on_cuda_trains(make_config):
    result = cuda_run(make_config, compile=True, max_steps=10, eval_every=10)
    assert math.isfinite(result.val.loss)
