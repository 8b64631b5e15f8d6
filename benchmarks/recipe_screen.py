"""Screen changes to the training recipe at equal steps: each setting is trained from scratch twice (seeds 1337
and 1) for a fixed number of steps and scored on the whole val split of tinyshakespeare. The two seeds run at
once, as two 1-thread processes, so a setting costs the wall time of one run. Equal steps, not equal seconds:
the result does not depend on how fast the machine is or on the process beside it. Prints one Markdown row per
setting with both seeds and their mean, and the CPU, ready for the README. Two seeds because one is not enough:
the same setting moved by up to 0.015 nats between them here.

    python benchmarks/recipe_screen.py                          # the README's weight-decay screen (about 25 min)
    python benchmarks/recipe_screen.py --only "weight decay 0.1, dropout 0" --only "old recipe"
    python benchmarks/recipe_screen.py --base model.hidden_size=320,model.embedding_dim=320,train.lr=0.005 \\
        --steps 8000 --setting "dropout 0.15=model.dropout=0.15,train.weight_decay=0.1"

The base is configs/shakespeare.yaml with a fixed 2x192 model (dropout 0.05, lr 7e-3, the recipe before weight
decay), no time budget, train.max_steps steps. A setting is "name=key=value,key=value" on top of the base.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from charrnn.device import describe_cpu

HERE = Path(__file__).resolve().parent
BASE = ("model.hidden_size=192,model.embedding_dim=192,model.dropout=0.05,train.lr=0.007,train.weight_decay=0,"
        "train.time_budget=null")
SEEDS = (1337, 1)
SETTINGS = {  # the README's screen, in the order it was run
    "old recipe (dropout 0.05, no weight decay)": "",
    "dropout 0.15": "model.dropout=0.15",
    "dropout 0": "model.dropout=0",
    "lr 1e-2": "train.lr=0.01",
    "fp32 instead of bf16": "train.precision=fp32",
    "weight decay 0.05": "train.weight_decay=0.05",
    "weight decay 0.1": "train.weight_decay=0.1",
    "weight decay 0.2": "train.weight_decay=0.2",
    "weight decay 0.1, dropout 0": "train.weight_decay=0.1,model.dropout=0",
    "2x256, weight decay 0.1 (2,780 steps: 100 s at 2x256's speed)":
        "model.hidden_size=256,model.embedding_dim=256,train.lr=0.006,train.weight_decay=0.1,train.max_steps=2780",
    "2x160, weight decay 0.1, dropout 0 (5,900 steps: 100 s at 2x160's speed)":
        "model.hidden_size=160,model.embedding_dim=160,train.lr=0.008,model.dropout=0,train.weight_decay=0.1,"
        "train.max_steps=5900",
}


def run_once(overrides: list[str], seed: int) -> dict:
    """One run in its own 1-thread process; its JSON row."""
    sets = [arg for kv in [*overrides, f"seed={seed}", "train.threads=1"] for arg in ("--set", kv)]
    out = subprocess.run([sys.executable, str(HERE / "shakespeare.py"), "configs/shakespeare.yaml", "--json", *sets],
                         capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def split(spec: str) -> list[str]:
    return [kv for kv in spec.split(",") if kv]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=BASE, help="comma-separated overrides every setting starts from")
    parser.add_argument("--steps", type=int, default=3800, help="train.max_steps (3,800: 100 s of 2x192 here)")
    parser.add_argument("--setting", action="append", default=[], help="'name=key=value,...' (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="run only these of the built-in settings")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting) if args.setting else {
        name: spec for name, spec in SETTINGS.items() if not args.only or name in args.only}
    print(f"CPU {describe_cpu()}; base {args.base}, train.max_steps={args.steps}; seeds {SEEDS}, 1 thread each",
          flush=True)
    print("| setting | steps | val loss, seed 1337 | seed 1 | mean | train loss (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in settings.items():
        overrides = [*split(args.base), f"train.max_steps={args.steps}", *split(spec)]
        with ThreadPoolExecutor(len(SEEDS)) as pool:
            rows = list(pool.map(run_once, [overrides] * len(SEEDS), SEEDS))
        vals = [r["val_loss"] for r in rows]
        trains = [r["train_loss"] for r in rows if r["train_loss"] is not None]
        train = f"{sum(trains) / len(trains):.3f}" if trains else "-"
        print(f"| {name} | {rows[0]['steps']:,} | {vals[0]:.4f} | {vals[1]:.4f} | **{sum(vals) / len(vals):.4f}** "
              f"| {train} |", flush=True)


if __name__ == "__main__":
    main()
