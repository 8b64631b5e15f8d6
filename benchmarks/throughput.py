"""Training throughput against a plain PyTorch loop, same model and batch, in the same run.

The plain loop is what most char-RNN scripts do: nanoGPT-style batches (a Python list of slices stacked per
batch), an fp32 nn.Embedding + nn.LSTM + nn.Linear, AdamW. charrnn trains the same sizes through its own
train() (vectorised batch gather, `train.precision: auto`, which is bf16 only where the CPU or GPU runs it
natively). Both then score the same validation text with the same function, so equal-steps quality is compared.

    python benchmarks/throughput.py [--steps 150] [--precision auto] [--cell lstm|gru|rnn]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.config import config_from_dict
from charrnn.data.cache import load_corpus
from charrnn.device import resolve_precision
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN
from charrnn.training.loop import train

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CHARRNN_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"
SIZES = {"encoding": "embedding", "embedding_dim": 256, "hidden_size": 256, "num_layers": 2}
B, T, LR = 32, 64, 3e-3
EVAL_CHARS = 30_000


def plain_loop(cfg, train_text: torch.Tensor, steps: int, seed: int) -> tuple[CharRNN, float]:
    torch.manual_seed(seed)
    model = CharRNN(65, cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    start = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(len(train_text) - T - 1, (B,))
        x = torch.stack([train_text[i : i + T] for i in ix])
        y = torch.stack([train_text[i + 1 : i + 1 + T] for i in ix])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 65), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, steps * B * T / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = {"name": "throughput", "seed": 0, "data": {"path": str(DATA), "val_fraction": 0.1},
               "model": {**SIZES, "cell": args.cell},
               "train": {"seq_length": T, "batch_size": B, "max_steps": args.steps, "lr": LR,
                         "lr_schedule": "constant", "optimizer": "adamw", "device": "cpu",
                         "precision": args.precision, "eval_every": 10**6,
                         "checkpoint_every": 10**6, "eval_max_chars": EVAL_CHARS},
               "log": {"dir": tmp, "tensorboard": False, "sample_every": 0}}
        cfg = config_from_dict(raw)
        corpus = load_corpus(DATA, Path(tmp) / ".cache")
        splits = corpus.splits(0.1, 0.0)
        train_text = torch.from_numpy(np.asarray(splits["train"], dtype=np.int64))
        precision = resolve_precision(args.precision, torch.device("cpu"), args.cell)
        print(f"2x256 {args.cell.upper()}, emb 256, batch {B}x{T}, AdamW, {args.steps} steps, "
              f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
              f"charrnn precision {args.precision} -> {precision}")

        plain_model, plain_speed = plain_loop(cfg, train_text, args.steps, seed=0)
        plain_val = evaluate(plain_model, splits["val"], max_chars=EVAL_CHARS).loss
        result = train(cfg, quiet=True)
        ours_speed = result.step * B * T / result.elapsed_s  # includes the final eval: a conservative figure
        print(f"{'loop':<34}{'chars/s':>10}{'ratio':>8}{'val loss @ equal steps':>26}")
        print(f"{'plain fp32 loop':<34}{plain_speed:>10,.0f}{1.0:>8.2f}{plain_val:>26.4f}")
        print(f"{'charrnn train (' + precision + ')':<34}{ours_speed:>10,.0f}{ours_speed / plain_speed:>8.2f}"
              f"{result.val.loss:>26.4f}")


if __name__ == "__main__":
    main()
