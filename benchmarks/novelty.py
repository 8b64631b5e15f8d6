"""What `sample --novelty` adds to a 64-sample batch on a ~1 MB corpus (tinyshakespeare).

Prints the one-time cost of the index (suffix array built with numpy and saved beside the cached ids), the
cost of opening it again, and the time to report 64 samples of 500 characters, for two kinds of samples:
text copied from the corpus with a character changed every ~20 (long shared stretches), and uniformly random
characters (short stretches, so nearly every position is searched).

    python benchmarks/novelty.py [--samples 64] [--length 500]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from charrnn.data.cache import load_corpus
from charrnn.novelty import NoveltyIndex, novelty

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = Path(os.environ.get("CHARRNN_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--length", type=int, default=500)
    args = parser.parse_args()
    text = SHAKESPEARE.read_text(encoding="utf-8")
    rng = random.Random(0)
    alphabet = sorted(set(text))
    copied = []
    for _ in range(args.samples):
        start = rng.randrange(len(text) - args.length)
        chars = list(text[start : start + args.length])
        for i in range(0, len(chars), 20):
            chars[min(len(chars) - 1, i + rng.randrange(20))] = rng.choice(alphabet)
        copied.append("".join(chars))
    noise = ["".join(rng.choice(alphabet) for _ in range(args.length)) for _ in range(args.samples)]

    with tempfile.TemporaryDirectory() as tmp:
        corpus = load_corpus(SHAKESPEARE, Path(tmp) / ".cache")
        n_train = len(corpus.splits(0.1, 0.0)["train"])
        print(f"corpus: {SHAKESPEARE.name}, {len(corpus.ids):,} characters, training split {n_train:,}")
        start = time.perf_counter()
        NoveltyIndex.for_corpus(corpus, n_train)
        print(f"index built once (suffix array, saved beside the ids): {time.perf_counter() - start:.2f} s")
        for name, samples in (("copied with changes", copied), ("random characters", noise)):
            start = time.perf_counter()
            corpus = load_corpus(SHAKESPEARE, Path(tmp) / ".cache")  # as `sample --novelty` opens it: cached
            index = NoveltyIndex.for_corpus(corpus, n_train)
            opened = time.perf_counter() - start
            reports = [novelty(index, corpus.vocab, s, None, False) for s in samples]
            total = time.perf_counter() - start
            mean = sum(r.longest_shared for r in reports) / len(reports)
            print(f"{args.samples} samples x {args.length} chars, {name}: {total:.3f} s added "
                  f"(opening the cached corpus and index {opened:.3f} s); mean longest shared stretch {mean:.1f}")


if __name__ == "__main__":
    main()
