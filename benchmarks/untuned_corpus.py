"""A corpus nobody tuned for: the shipped 100-second config against a plain fp32 loop given the same wall clock.

The corpus is about 1 MB of the Python standard library's own source (built as benchmarks/inspect_units.py
builds it). The plain loop is what a char-RNN script does without charrnn's recipe: a 2x256 LSTM, embedding
256, random windows of 64, batch 32, AdamW 3e-3 with cosine decay to 10% over the same seconds, fp32. Both are
scored on the same last 10% of the corpus with the same function (charrnn.evaluate), the whole split.

    python benchmarks/untuned_corpus.py [--config configs/shakespeare.yaml] [--seconds 100]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from inspect_units import build_corpus

from charrnn.config import ModelConfig, load_config
from charrnn.data.cache import load_corpus
from charrnn.device import describe_cpu, resolve_precision
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN
from charrnn.training.loop import train

B, T, LR = 32, 64, 3e-3


def plain_loop(train_ids: np.ndarray, vocab_size: int, seconds: float, seed: int = 0) -> tuple[CharRNN, int]:
    """The baseline: train for `seconds` of wall clock (the cosine schedule stretched over them)."""
    torch.manual_seed(seed)
    model = CharRNN(vocab_size, ModelConfig(cell="lstm", encoding="embedding", embedding_dim=256, hidden_size=256,
                                            num_layers=2))
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    data = torch.from_numpy(np.asarray(train_ids, dtype=np.int64))
    start, steps = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in opt.param_groups:
            group["lr"] = LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(elapsed / seconds, 1.0))))
        ix = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[i : i + T] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + T] for i in ix])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
    return model, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare.yaml")
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--corpus", type=Path, default=None, help="reuse this corpus file instead of building one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="charrnn-untuned-"))
    corpus_path = args.corpus or build_corpus(work / "pystd.txt")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {describe_cpu()}")
    print(f"corpus: {corpus_path} ({corpus_path.stat().st_size:,} bytes)")

    cfg = load_config(args.config, [f"data.path={corpus_path}", f"log.dir={work / 'runs'}", "log.tensorboard=false",
                                    f"train.time_budget={args.seconds}", "log.sample_every=0"])
    result = train(cfg, quiet=True)
    ours = result.val
    trained = load_config(result.run_dir / "config.yaml")

    corpus = load_corpus(corpus_path, work / "cache")
    splits = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)
    model, steps = plain_loop(splits["train"], len(corpus.vocab), args.seconds)
    plain = evaluate(model, splits["val"], batch_size=64)

    m = trained.model
    print(f"{'loop':<44} {'steps':>7} {'val loss':>9}")
    precision = resolve_precision(trained.train.precision, torch.device("cpu"), m.cell)
    print(f"{f'charrnn {args.config} ({m.num_layers}x{m.hidden_size}, {precision})':<44} "
          f"{result.step:>7,} {ours.loss:>9.4f}")
    print(f"{'plain fp32 2x256 LSTM, same wall clock':<44} {steps:>7,} {plain.loss:>9.4f}")
    print(f"difference: {plain.loss - ours.loss:+.4f} nats/char in charrnn's favour "
          f"(whole val split, {ours.chars:,} predictions)")


if __name__ == "__main__":
    main()
