"""What the checkpoint digest costs: save + load time of a 2x256 LSTM checkpoint with and without it.

The state is what training writes (model, AdamW state after a step, RNG, config, ...), V = 65 as tinyshakespeare.
"without" is the save and load as they were before the digest (atomic write with fsync, torch.load with
weights_only); "with" is `save_checkpoint` + `load_checkpoint`, under the default digest and under sha256.
Repeats are interleaved (in rotating order) and medians reported, so a busy machine skews all variants alike;
the digest alone (hashing the state in memory) is timed too.

    python benchmarks/checkpoint_io.py [--repeats 30] [--hidden 256] [--layers 2] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import charrnn.run.checkpoint as ckpt
from charrnn.config import ModelConfig, config_from_dict
from charrnn.model import CharRNN


def training_state(hidden: int, layers: int) -> dict:
    """A checkpoint state shaped like the one train() writes."""
    cfg = config_from_dict({"model": {"cell": "lstm", "hidden_size": hidden, "num_layers": layers,
                                      "encoding": "embedding", "embedding_dim": 64}})
    model = CharRNN(65, ModelConfig(**cfg.to_dict()["model"]))
    optimizer = torch.optim.AdamW(model.parameters())
    logits, _ = model(torch.zeros(32, 64, dtype=torch.long))
    logits.sum().backward()
    optimizer.step()
    return {"step": 1000, "config": cfg.to_dict(), "vocab": [chr(32 + i) for i in range(65)], "first_char": " ",
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "data": {"position": 123},
            "hidden": None, "rng": {"torch": torch.get_rng_state()}, "scaler": {}, "best_val": 1.5,
            "elapsed": 99.0, "window": (12.5, 10), "val": None, "val_step": 1000}


def save_without_digest(state: dict, path: Path) -> None:
    stamped = {"format": ckpt.FORMAT, "version": 1, **state}
    ckpt.atomic_write(path, lambda f: torch.save(stamped, f))


def load_without_digest(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = training_state(args.hidden, args.layers)
    default = ckpt.DIGEST
    variants = {"without digest": None, f"{default} digest": default, "sha256 digest": "sha256"}
    times: dict[str, dict[str, list[float]]] = {v: {"save": [], "load": []} for v in variants}
    names = list(variants)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for i in range(args.repeats + 1):
            # Each variant its own file, and the order rotates every round: a write's fsync can be slowed by
            # the writeback of the write before it, which must not always fall on the same variant.
            for name in names[i % len(names):] + names[:i % len(names)]:
                path = Path(tmp) / f"{names.index(name)}.pt"
                algorithm = variants[name]
                if algorithm is None:
                    save_s, load_s = timed(save_without_digest, state, path), timed(load_without_digest, path)
                else:
                    ckpt.DIGEST = algorithm
                    save_s, load_s = timed(ckpt.save_checkpoint, state, path), timed(ckpt.load_checkpoint, path)
                if i:  # the first round warms caches and allocators
                    times[name]["save"].append(save_s)
                    times[name]["load"].append(load_s)
        size = (Path(tmp) / "0.pt").stat().st_size
    ckpt.DIGEST = default
    print(f"{args.layers}x{args.hidden} LSTM checkpoint, {size / 1e6:.1f} MB, median of {args.repeats}")
    base = {k: statistics.median(v) for k, v in times["without digest"].items()}
    base_total = base["save"] + base["load"]
    for name, t in times.items():
        save_ms, load_ms = statistics.median(t["save"]) * 1e3, statistics.median(t["load"]) * 1e3
        total = (save_ms + load_ms) / 1e3
        print(f"  {name:16s} save {save_ms:6.1f} ms  load {load_ms:6.1f} ms  "
              f"save+load {total * 1e3:6.1f} ms  ratio {total / base_total:.2f}")
    for algorithm in (default, "sha256"):
        alone = statistics.median(timed(ckpt.state_digest, state, algorithm) for _ in range(args.repeats))
        print(f"  {algorithm} of the state alone: {alone * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
