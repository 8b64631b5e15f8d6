"""Training speed in fp32 and bf16 on this CPU, same model and batch, in the same run: whether bf16 pays here.

`train.precision: auto` takes bf16 only where the CPU has native bf16 (avx512_bf16 or AMX); on plain AVX-512,
oneDNN runs a bf16 LSTM emulated, and this benchmark shows what that costs.

    python benchmarks/precision.py [--widths 128 192 256 320] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig
from charrnn.device import autocast, bf16_supported, describe_cpu, native_cpu_bf16
from charrnn.model import CharRNN

B, T, V = 32, 32, 65  # the Shakespeare configs' batch


def chars_per_sec(width: int, precision: str, steps: int) -> float:
    torch.manual_seed(0)
    model = CharRNN(V, ModelConfig(cell="lstm", encoding="embedding", embedding_dim=width, hidden_size=width,
                                   num_layers=2, tie_weights=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, V, (B, T + 1))

    def step() -> None:
        with autocast("cpu", precision):
            logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, V), x[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(5):  # kernels and thread pools
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return B * T * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 192, 256, 320])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}; {torch.get_num_threads()} torch threads; native bf16: {native_cpu_bf16()}")
    if not bf16_supported(torch.device("cpu"), "lstm"):
        print("oneDNN runs no bf16 LSTM on this CPU: fp32 only")
        return
    print(f"{'2-layer tied LSTM':>18} {'fp32 chars/s':>13} {'bf16 chars/s':>13} {'bf16 / fp32':>12}")
    for width in args.widths:
        fp32, bf16 = (chars_per_sec(width, p, args.steps) for p in ("fp32", "bf16"))
        print(f"{width:>18} {fp32:>13,.0f} {bf16:>13,.0f} {bf16 / fp32:>12.2f}")


if __name__ == "__main__":
    main()
