"""Sampling speed: chars/s for 1 stream and for 64 streams of a 2x256 LSTM on CPU.

Baseline in the same run: calling nn.LSTM on one character at a time (the naive sampler).
Speed does not depend on the weights, so the model is freshly initialised (V = 65, as tinyshakespeare).

    python benchmarks/sampling.py [--length 3000] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.sampling import SamplingOptions, generate
from charrnn.vocab import Vocab


def charrnn_speed(model: CharRNN, vocab: Vocab, streams: int, length: int) -> float:
    start = time.perf_counter()
    for _ in generate(model, vocab, prime="a", length=length, opts=SamplingOptions(temperature=0.8),
                      num_samples=streams, seed=0):
        pass
    return streams * length / (time.perf_counter() - start)


@torch.inference_mode()
def naive_speed(model: CharRNN, streams: int, length: int) -> float:
    """nn.LSTM called on a length-1 sequence per character, softmax and multinomial: the usual sampler."""
    x = torch.zeros(streams, 1, dtype=torch.long)
    hidden = None
    start = time.perf_counter()
    for _ in range(length):
        logits, hidden = model(x, hidden)
        x = torch.multinomial(torch.softmax(logits[:, -1] / 0.8, dim=-1), 1)
    return streams * length / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = Vocab([chr(c) for c in range(58, 123)])  # 65 characters, "a" among them
    model = CharRNN(len(vocab), ModelConfig(cell="lstm", encoding="embedding", embedding_dim=256, hidden_size=256,
                                            num_layers=2)).eval()
    print(f"2x256 LSTM, V={len(vocab)}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'sampler':<28}{'streams':>8}{'chars/s':>12}{'vs naive':>10}")
    for streams in (1, 64):
        length = args.length if streams == 1 else max(200, args.length // 10)
        charrnn_speed(model, vocab, streams, 50)  # warm-up
        naive = naive_speed(model, streams, length)
        ours = charrnn_speed(model, vocab, streams, length)
        print(f"{'naive nn.LSTM per step':<28}{streams:>8}{naive:>12,.0f}{1.0:>10.2f}")
        print(f"{'charrnn (stepper)':<28}{streams:>8}{ours:>12,.0f}{ours / naive:>10.2f}")


if __name__ == "__main__":
    main()
