"""Quality at equal wall clock on tinyshakespeare: train shipped configs from scratch with the CLI's own code
path (charrnn.train.train) and print wall seconds, train chars/s and the final val loss over the whole val split.

    python benchmarks/shakespeare.py                                  # configs/shakespeare.yaml
    python benchmarks/shakespeare.py configs/shakespeare-10min.yaml
    python benchmarks/shakespeare.py configs/shakespeare.yaml --set train.batching=random   # an experiment

The corpus is read from $CHARRNN_DATA_DIR/tinyshakespeare.txt (default ../shared/data). Runs go to a temporary
folder unless --runs is given.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from charrnn.config import load_config
from charrnn.train import train

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CHARRNN_DATA_DIR", REPO.parent / "shared" / "data")) / "tinyshakespeare.txt"


def run_config(path: str, overrides: list[str], runs: Path) -> dict:
    cfg = load_config(path, [f"data.path={DATA}", f"log.dir={runs}", "log.tensorboard=false", *overrides])
    start = time.perf_counter()
    result = train(cfg, quiet=True, overwrite=True)
    wall = time.perf_counter() - start
    return {
        "config": path, "overrides": overrides, "steps": result.step, "train_s": round(result.elapsed_s, 1),
        "wall_s": round(wall, 1), "chars_per_sec": round(result.chars_per_sec),
        "val_loss": round(result.val.loss, 4), "val_bpc": round(result.val.bpc, 4), "val_chars": result.val.chars,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=["configs/shakespeare.yaml"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--json", action="store_true", help="one JSON line per config")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"corpus not found: {DATA} (set CHARRNN_DATA_DIR)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        for path in args.configs:
            row = run_config(path, args.overrides, runs)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{path} {' '.join(args.overrides)}\n  steps {row['steps']}  train {row['train_s']} s "
                      f"(wall {row['wall_s']} s)  {row['chars_per_sec']:,} chars/s  val loss {row['val_loss']:.4f} "
                      f"nats/char = {row['val_bpc']:.4f} bpc over {row['val_chars']:,} chars", flush=True)


if __name__ == "__main__":
    main()
