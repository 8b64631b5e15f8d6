"""Corpus encoding at scale: generate a ~1 GB UTF-8 text, encode it with charrnn's own load_corpus and print
MB/s and the encoder's peak RSS, then the same text as a folder of many files (a few KB to 256 KB each,
100 to a subfolder), then the time from the cached id file to the first training step.

    python benchmarks/data.py                      # 1 GB in a temporary folder, deleted afterwards
    python benchmarks/data.py --size-mb 200        # smaller
    python benchmarks/data.py --path /big/disk/corpus.txt --keep
    python benchmarks/data.py --folder /usr/lib/python3.11 --include '**/*.py'   # a real folder: encode,
        # start to first step on the cached corpus, then again after touching one file

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
SHAKESPEARE = Path(os.environ.get("CHARRNN_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"
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


def split_into_folder(corpus: Path, folder: Path, seed: int = 0) -> int:
    """Cut corpus at line ends into files of 4 KB to 256 KB, 100 to a subfolder; returns the file count."""
    rng = random.Random(seed)
    count = 0
    with open(corpus, "rb") as f:
        while block := f.read(rng.randint(4_000, 256_000)):
            block += f.readline()  # end at a line end: no character is cut in two
            sub = folder / f"part{count // 100:04d}"
            if count % 100 == 0:
                sub.mkdir(parents=True)
            (sub / f"doc{count:06d}.txt").write_bytes(block)
            count += 1
    return count


def child_encode(corpus: str, cache: str, include: str = "") -> dict:
    from charrnn.data.cache import load_corpus
    from charrnn.data.files import list_corpus_files

    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    encoded = load_corpus(corpus, cache, include=include or None)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu_before, "chars": len(encoded.ids),
            "vocab": len(encoded.vocab), "dtype": str(encoded.ids.dtype), "files": encoded.files,
            "skipped": encoded.skipped, "bytes": sum(list_corpus_files(corpus, include or None).sizes),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_first_step(corpus: str, cache: str, runs: str, include: str = "") -> dict:
    import torch
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imported here: not part of the data path)

    from charrnn.config import config_from_dict
    from charrnn.tracking import Tracker
    from charrnn.training.loop import train

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (~2 s)

    first_step: list[float] = []
    scalars = Tracker.scalars

    def note_first_step(self, step, values):
        if not first_step:
            first_step.append(time.perf_counter())
        scalars(self, step, values)

    Tracker.scalars = note_first_step
    cfg = config_from_dict({
        "name": "first-step", "data": {"path": corpus, "cache": cache, "val_fraction": 0.1,
                                       "include": include or None},
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
    parser.add_argument("--folder", type=Path, help="measure this folder instead of a generated text")
    parser.add_argument("--include", default="", help="with --folder: data.include, e.g. '**/*.py'")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_encode(*rest) if kind == "encode" else child_first_step(*rest)))
        return
    if args.folder:
        measure_folder(args.folder, args.include)
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
        start = time.perf_counter()
        files = split_into_folder(corpus, folder / "docs")
        print(f"split into a folder of {files:,} files in {time.perf_counter() - start:.1f} s", flush=True)
        # The file and the folder in turn, twice each, each into a fresh cache: best of 2, so that a burst of
        # load from other processes does not decide the comparison.
        best: dict[str, dict] = {}
        for _ in range(2):
            for kind, source in (("file", corpus), ("folder", folder / "docs")):
                run = in_child("encode", str(source), str(folder / "cache-compare"))
                shutil.rmtree(folder / "cache-compare")
                if kind not in best or run["cpu_seconds"] < best[kind]["cpu_seconds"]:
                    best[kind] = run
        many = best["folder"]
        folder_speed = size / 1e6 / many["cpu_seconds"]
        file_speed = size / 1e6 / best["file"]["cpu_seconds"]
        print(f"encode the folder: {many['seconds']:.1f} s, {folder_speed:,.0f} MB per CPU second (the file, encoded "
              f"in turn with it: {file_speed:,.0f}; best of 2 each); peak RSS {many['max_rss_mb']:,.0f} MB; "
              f"{many['files']:,} files, {many['chars']:,} chars (separators included); "
              f"{folder_speed / file_speed:.2f}x the single file's speed", flush=True)
        shutil.rmtree(folder / "docs")
        step = in_child("first-step", str(corpus), str(cache), str(folder / "runs"))
        print(f"id file -> first training step: {step['seconds']:.2f} s from train() to the first step logged "
              f"({step['process_seconds']:.1f} s for the whole process, imports and a 10k-char eval included); "
              f"trainer peak RSS {step['max_rss_mb']:,.0f} MB")
        ok = speed >= 100 and enc["max_rss_mb"] <= 1536 and step["seconds"] < 5 and folder_speed >= 0.95 * file_speed
        print(f"targets (>= 100 MB/s, <= 1.5 GB RSS, < 5 s to first step, a folder as fast as a file within 5%): "
              f"{'met' if ok else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {corpus} and {cache}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            if args.path:
                args.path.unlink(missing_ok=True)


def measure_folder(source: Path, include: str) -> None:
    """A real folder: encode it, train from the cached ids (start to first step), touch one file, encode again."""
    folder = Path(tempfile.mkdtemp(prefix="charrnn-folder-bench-"))
    cache, runs = folder / "cache", folder / "runs"
    try:
        enc = in_child("encode", str(source), str(cache), include)
        print(f"encode {source} (data.include {include or 'every file'}): {enc['files']:,} files, "
              f"{enc['bytes'] / 1e6:,.1f} MB in {enc['seconds']:.2f} s = {enc['bytes'] / 1e6 / enc['seconds']:,.0f} "
              f"MB/s; {enc['chars']:,} chars, vocabulary {enc['vocab']}; skipped {len(enc['skipped'])} not UTF-8: "
              f"{', '.join(enc['skipped'][:5])}", flush=True)
        again = in_child("encode", str(source), str(cache), include)
        steps = [in_child("first-step", str(source), str(cache), str(runs / str(i)), include) for i in range(3)]
        step = min(steps, key=lambda s: s["seconds"])
        print(f"second run, cache reused: opening the corpus {again['seconds']:.3f} s; train() to the first step "
              f"{step['seconds']:.2f} s, best of 3 ({step['process_seconds']:.1f} s for the whole process, imports "
              "included)")
        from charrnn.data.files import list_corpus_files

        touched = list_corpus_files(source, include or None).paths[0]
        os.utime(touched)
        after = in_child("encode", str(source), str(cache), include)
        entries = len(list(cache.iterdir()))
        print(f"after touching {touched}: encoded again in {after['seconds']:.2f} s ({entries} cache entries)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
