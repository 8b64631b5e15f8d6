"""Quality at equal wall clock on tinyshakespeare: train shipped configs from scratch with the CLI's own code
path (charrnn.train.train) and print wall seconds, train chars/s and the final val loss over the whole val split,
with the model the run trained (the width `hidden_size: auto` chose), its precision, and the CPU.

    python benchmarks/shakespeare.py                                  # configs/shakespeare.yaml
    python benchmarks/shakespeare.py configs/shakespeare-10min.yaml
    python benchmarks/shakespeare.py configs/shakespeare.yaml --set train.batching=random   # an experiment

The corpus is read from $CHARRNN_DATA_DIR/tinyshakespeare.txt (default data/ in the repository). Runs go to a temporary
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
import yaml

from charrnn.config import ModelConfig, load_config
from charrnn.device import describe_cpu, resolve_device, resolve_precision
from charrnn.model import CharRNN
from charrnn.training import autosize
from charrnn.training.loop import train

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CHARRNN_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"


def run_config(path: str, overrides: list[str], runs: Path) -> dict:
    """Train one config from scratch and describe the result: the model it trained, speed and val loss."""
    cfg = load_config(path, [f"data.path={DATA}", f"log.dir={runs}", "log.tensorboard=false", *overrides])
    notes: list[str] = []
    resolve = autosize.resolve_auto

    def resolve_and_note(*args, **kwargs):  # keep the auto line that quiet=True would not print
        resolution = resolve(*args, **kwargs)
        notes.append(resolution.message or "")
        return resolution

    autosize.resolve_auto = resolve_and_note
    start = time.perf_counter()
    try:
        result = train(cfg, quiet=True, overwrite=True)
    finally:
        autosize.resolve_auto = resolve
    wall = time.perf_counter() - start
    ran = yaml.safe_load((result.run_dir / "config.yaml").read_text(encoding="utf-8"))  # with auto resolved
    model, opts = ran["model"], ran["train"]
    precision = resolve_precision(opts["precision"], resolve_device(opts["device"]), model["cell"])
    vocab = json.loads((result.run_dir / "vocab.json").read_text(encoding="utf-8"))["chars"]
    with torch.device("meta"):
        params = sum(p.numel() for p in CharRNN(len(vocab), ModelConfig(**model)).parameters())
    evals = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_loss = next((e["train_loss"] for e in reversed(evals) if e.get("train_loss") is not None), None)
    return {
        "config": path, "overrides": overrides, "hidden_size": model["hidden_size"],
        "auto": cfg.model.hidden_size == "auto", "num_layers": model["num_layers"], "dropout": model["dropout"],
        "lr": opts["lr"], "precision": precision, "threads": torch.get_num_threads(),
        "steps": result.step, "train_s": round(result.elapsed_s, 1),
        "wall_s": round(wall, 1), "chars_per_sec": round(result.chars_per_sec),
        "val_loss": round(result.val.loss, 4), "val_bpc": round(result.val.bpc, 4), "val_chars": result.val.chars,
        "train_loss": round(train_loss, 4) if train_loss is not None else None, "params": params,
        "chars_per_param": round(result.step * opts["batch_size"] * opts["seq_length"] / params, 2),
        "auto_note": "".join(notes), "cpu": describe_cpu(),
    }


def model_line(row: dict) -> str:
    """'2x256 (auto), dropout 0.1, lr 0.006, bf16, 2 threads'."""
    width = f"{row['num_layers']}x{row['hidden_size']}" + (" (auto)" if row["auto"] else "")
    return f"{width}, dropout {row['dropout']:g}, lr {row['lr']:g}, {row['precision']}, {row['threads']} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=["configs/shakespeare.yaml"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--json", action="store_true", help="one JSON line per config")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"corpus not found: {DATA} (set CHARRNN_DATA_DIR)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {describe_cpu()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        for path in args.configs:
            row = run_config(path, args.overrides, runs)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                note = f"\n  {row['auto_note']}" if row["auto_note"] else ""
                print(f"{path} {' '.join(args.overrides)}\n  model {model_line(row)}{note}\n"
                      f"  steps {row['steps']}  train {row['train_s']} s "
                      f"(wall {row['wall_s']} s)  {row['chars_per_sec']:,} chars/s  val loss {row['val_loss']:.4f} "
                      f"nats/char = {row['val_bpc']:.4f} bpc over {row['val_chars']:,} chars", flush=True)


if __name__ == "__main__":
    main()
