"""Corpus encoding at scale: generate a ~1 GB UTF-8 text, encode it with charrnn's own load_corpus and print
MB/s and the encoder's peak RSS, then the time from the cached id file to the first training step.

    python benchmarks/data.py                      # 1 GB in a temporary folder, deleted afterwards
    python benchmarks/data.py --size-mb 200        # smaller
    python benchmarks/data.py --path /big/disk/corpus.txt --keep

Each measurement runs in a child process, so ru_maxrss is that of the encoder (or the trainer) alone; it
includes the ~0.3-0.4 GB that importing torch costs. The text is tinyshakespeare's lines shuffled, with
non-ASCII words mixed in (so the general UTF-8 path is measured, not an ASCII shortcut). The file has just
been written, so it is read from the page cache: the figure is the encoder's speed, not the disk's.
Targets: >= 100 MB/s and <= 1.5 GB peak RSS for encoding; < 5 s from id file to first step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = Path(os.environ.get("CHARRNN_DATA_DIR", REPO.parent / "shared" / "data")) / "tinyshakespeare.txt"
EXTRA_WORDS = ["café", "naïve", "—", "“quoted”", "Straße", "Ελλάδα", "日本語", "🙂", "€5"]


def generate(path: Path, size_mb: int, seed: int = 0) -> None:
    """Write about size_mb MB of text: eight shuffles of tinyshakespeare's lines (with non-ASCII words mixed
    in), written in turn until the size is reached."""
    rng = random.Random(seed)
    if SHAKESPEARE.is_file():
        lines = SHAKESPEARE.read_text(encoding="utf-8").splitlines()
    else:
        words = ["the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as"]
        lines = [" ".join(rng.choices(words, k=12)) for _ in range(40_000)]
    lines = [f"{line} {rng.choice(EXTRA_WORDS)}" if rng.random() < 0.05 else line for line in lines]
    blocks = []
    for _ in range(8):
        rng.shuffle(lines)
        blocks.append(("\n".join(lines) + "\n").encode("utf-8"))
    written, turn = 0, 0
    with open(path, "wb") as f:
        while written < size_mb * 1_000_000:
            written += f.write(blocks[turn % len(blocks)])
            turn += 1


def child_encode(corpus: str, cache: str) -> dict:
    from charrnn.data import load_corpus

    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    encoded = load_corpus(corpus, cache)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu_before, "chars": len(encoded.ids),
            "vocab": len(encoded.vocab), "dtype": str(encoded.ids.dtype),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_first_step(corpus: str, cache: str, runs: str) -> dict:
    import torch
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imported here: not part of the data path)

    from charrnn.config import config_from_dict
    from charrnn.tracking import Tracker
    from charrnn.train import train

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (~2 s)

    first_step: list[float] = []
    scalars = Tracker.scalars

    def note_first_step(self, step, values):
        if not first_step:
            first_step.append(time.perf_counter())
        scalars(self, step, values)

    Tracker.scalars = note_first_step
    cfg = config_from_dict({
        "name": "first-step", "data": {"path": corpus, "cache": cache, "val_fraction": 0.1},
        "model": {"cell": "lstm", "hidden_size": 64, "num_layers": 1},
        "train": {"max_steps": 1, "batch_size": 32, "seq_length": 64, "eval_max_chars": 10_000, "device": "cpu"},
        "log": {"dir": runs, "tensorboard": True, "sample_every": 0},
    })
    start = time.perf_counter()
    train(cfg, quiet=True)
    return {"seconds": first_step[0] - start, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(*args: str) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="size of the generated text in MB (10^6 bytes)")
    parser.add_argument("--path", type=Path, help="where to write the text (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the text and its encoded cache")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_encode(*rest) if kind == "encode" else child_first_step(*rest)))
        return

    folder = Path(tempfile.mkdtemp(prefix="charrnn-data-bench-"))
    corpus = args.path or folder / "corpus.txt"
    cache = folder / "cache"
    try:
        start = time.perf_counter()
        generate(corpus, args.size_mb)
        size = corpus.stat().st_size
        print(f"generated {corpus} ({size / 1e6:,.0f} MB) in {time.perf_counter() - start:.1f} s", flush=True)

        enc = in_child("encode", str(corpus), str(cache))
        speed = size / 1e6 / enc["seconds"]
        ids_mb = sum(p.stat().st_size for p in cache.rglob("ids.bin")) / 1e6
        print(f"encode: {enc['seconds']:.1f} s = {speed:,.0f} MB/s ({size / 1e6 / enc['cpu_seconds']:,.0f} MB per "
              f"CPU second); peak RSS {enc['max_rss_mb']:,.0f} MB; {enc['chars']:,} chars, "
              f"vocabulary {enc['vocab']}, ids {enc['dtype']} ({ids_mb:,.0f} MB)", flush=True)
        step = in_child("first-step", str(corpus), str(cache), str(folder / "runs"))
        print(f"id file -> first training step: {step['seconds']:.2f} s from train() to the first step logged "
              f"({step['process_seconds']:.1f} s for the whole process, imports and a 10k-char eval included); "
              f"trainer peak RSS {step['max_rss_mb']:,.0f} MB")
        ok = speed >= 100 and enc["max_rss_mb"] <= 1536 and step["seconds"] < 5
        print(f"targets (>= 100 MB/s, <= 1.5 GB RSS, < 5 s to first step): {'met' if ok else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {corpus} and {cache}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            if args.path:
                args.path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
