"""The measurements `model.hidden_size: auto` is fitted on: fixed widths x time budgets x CPU threads on
tinyshakespeare, each trained from scratch through charrnn.train.train and scored on the whole val split, plus
the width `auto` picks in the same setting. Prints one Markdown table row per run, with the CPU model and its
bf16 support, ready for the README.

    python benchmarks/width_sweep.py                                        # 100 s, widths 160..384, 2 and 1 threads
    python benchmarks/width_sweep.py --budgets 600 --widths 256,320,384,448,512 --threads 2
    python benchmarks/width_sweep.py --device cuda --budgets 100 --widths 256,512,1024 --threads 2

The recipe is configs/shakespeare-10min.yaml (2-layer tied stateful LSTM, seq 32, batch 32, cosine to 2%, weight
decay 0.1) with `train.time_budget`, `train.threads` and `model.hidden_size` set per row; dropout and lr follow
the width (`auto`), as the rule's tables say. Runs take their whole budget each: the total is printed first.
Run it on an idle machine: other work on the CPU changes the speeds and so the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from shakespeare import DATA, run_config  # benchmarks/shakespeare.py: one config, trained and scored

from charrnn.device import cpu_info

HEADER = ("| CPU | bf16 | device | threads | precision | budget s | width | dropout | lr | steps | chars/s "
          "| train loss | val loss | chars/param |")


def table_row(row: dict, budget: float, device: str) -> str:
    cpu = cpu_info()
    bf16 = ", ".join(cpu["bf16_flags"]) or "none"
    width = f"auto -> {row['hidden_size']}" if row["auto"] else str(row["hidden_size"])
    train_loss = f"{row['train_loss']:.3f}" if row["train_loss"] is not None else "-"
    return (f"| {cpu['model']} ({cpu['isa']}) | {bf16} | {device} | {row['threads']} | {row['precision']} | "
            f"{budget:g} | {width} | {row['dropout']:g} | {row['lr']:g} | {row['steps']:,} | "
            f"{row['chars_per_sec']:,} | {train_loss} | **{row['val_loss']:.4f}** | {row['chars_per_param']:g} |")


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare-10min.yaml")
    parser.add_argument("--widths", type=ints, default=[160, 192, 256, 320, 384])
    parser.add_argument("--budgets", type=lambda t: [float(x) for x in t.split(",")], default=[100.0])
    parser.add_argument("--threads", type=ints, default=[2, 1])
    parser.add_argument("--no-auto", dest="auto", action="store_false", help="skip the hidden_size: auto rows")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | ... (train.device)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--json", type=Path, default=None, help="also append one JSON line per run to this file")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"corpus not found: {DATA} (set CHARRNN_DATA_DIR)")
    per_setting = len(args.widths) + int(args.auto)
    total = sum(args.budgets) * per_setting * len(args.threads)
    print(f"{per_setting * len(args.budgets) * len(args.threads)} runs, about {total / 60:.0f} min of training "
          f"(plus evaluation); {os.cpu_count()} CPUs here", file=sys.stderr, flush=True)
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    with tempfile.TemporaryDirectory() as runs:
        for budget in args.budgets:
            for threads in args.threads:
                widths: list[int | str] = [*args.widths, *(["auto"] if args.auto else [])]
                for width in widths:
                    overrides = [f"train.time_budget={budget:g}", f"train.threads={threads}",
                                 f"train.device={args.device}", f"model.hidden_size={width}",
                                 "model.embedding_dim=auto", "model.dropout=auto", "train.lr=auto", *args.overrides]
                    row = run_config(args.config, overrides, Path(runs))
                    print(table_row(row, budget, args.device), flush=True)
                    if row["auto_note"]:
                        print(f"  {row['auto_note']}", file=sys.stderr, flush=True)
                    if args.json:
                        with args.json.open("a", encoding="utf-8") as f:
                            f.write(json.dumps({"budget": budget, "device": args.device, **row}) + "\n")


if __name__ == "__main__":
    main()
