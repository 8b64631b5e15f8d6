"""How much of a training run evaluations take on a large corpus, with the default evaluation settings
(train.eval_every 200, train.eval_max_chars auto): a ~1 GB text (benchmarks/data.py's generator), the Shakespeare
recipe at a fixed width for 400 steps, every evaluation timed in the trainer itself.

    python benchmarks/eval_share.py                    # 1 GB, 400 steps, widths 128 and 256
    python benchmarks/eval_share.py --size-mb 200 --widths 128

Target: evaluations take at most 10% of the run's wall time. Without the cap each evaluation would score the
whole validation split (100M characters of a 1 GB text): the last line prints what that would cost, from the
measured evaluation speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from charrnn.config import load_config  # noqa: E402
from charrnn.device import describe_cpu  # noqa: E402
from charrnn.training import validation  # noqa: E402
from charrnn.training.loop import train  # noqa: E402
from data import generate  # noqa: E402  (benchmarks/data.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {describe_cpu()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="charrnn-eval-share-"))
    try:
        corpus = folder / "corpus.txt"
        generate(corpus, args.size_mb)
        print(f"corpus: {corpus.stat().st_size / 1e6:,.0f} MB")
        for width in args.widths:
            run_once(corpus, folder, width, args.steps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_once(corpus: Path, folder: Path, width: int, steps: int) -> None:
    cfg = load_config(REPO / "configs" / "shakespeare.yaml", [
        f"data.path={corpus}", f"data.cache={folder / 'cache'}", f"log.dir={folder / 'runs'}",
        f"model.hidden_size={width}", "model.dropout=0", "train.lr=0.008", "train.time_budget=null",
        f"train.max_steps={steps}", "train.patience=null", "train.precision=fp32",
        "train.eval_every=200", "train.eval_max_chars=auto", "log.tensorboard=false", "log.sample_every=0"])
    timings: list[tuple[float, int]] = []
    score = validation.Validation.score

    def timed(self, *a, **k):
        began = time.perf_counter()
        metrics = score(self, *a, **k)
        timings.append((time.perf_counter() - began, metrics.chars))
        return metrics

    validation.Validation.score = timed
    try:
        train(cfg, run_dir=folder / "runs" / f"w{width}", quiet=True)  # encodes the corpus once (cached)
        timings.clear()
        began = time.perf_counter()
        train(cfg, run_dir=folder / "runs" / f"w{width}", overwrite=True, quiet=True)
        wall = time.perf_counter() - began
    finally:
        validation.Validation.score = score
    eval_s = sum(t for t, _ in timings)
    scored = sum(c for _, c in timings)
    val_chars = round(corpus.stat().st_size * cfg.data.val_fraction)
    print(f"width {width}: {steps} steps in {wall:.1f} s; {len(timings)} evaluations of {timings[0][1]:,} "
          f"characters took {eval_s:.1f} s = {eval_s / wall:.1%} of the run (target <= 10%); the whole split "
          f"(~{val_chars / 1e6:,.0f}M characters) at that speed: {val_chars / (scored / eval_s):,.0f} s each")


if __name__ == "__main__":
    main()
