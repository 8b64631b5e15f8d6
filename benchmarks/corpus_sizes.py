"""The time-budget config on corpora of many sizes: does the run end near its best, and is the model that `sample`
and `eval` use as good as the best fixed width's?

Corpora (made under --work from what the repository and this machine hold): prefixes of data/tinyshakespeare.txt
(100 KB, 300 KB, 600 KB) and the whole of it (1.1 MB), data/names.txt (0.2 MB), the licence texts of
/usr/share/common-licenses (0.24 MB, where present) and Python's standard library source cut to 300 KB, 1 MB,
2 MB and 5 MB (files in a fixed shuffled order, so the validation tail is not one module; none over 200 KB).

Each run trains `configs/shakespeare.yaml` (or --config) on one corpus for --budget seconds, with the width `auto`
picks or a fixed one (--widths auto 64 128 192 256: the same recipe, dropout and lr following the width), and
prints one row: steps, passes over the training text, chars/s, the best and the last evaluation (and the step of
each), the final training loss, and `charrnn eval RUN` on the whole validation split (the default checkpoint);
under train.ema also the best evaluation of the average alone and of the weights alone (the run keeps the better).
Rows are appended to --out as JSON lines as well. One run says little at 0.02: with the seed fixed, a run of
names.txt at 30 s moves by 0.015 to 0.04 when its dropout moves from 0.22 to 0.23 (another mask stream), as much
as a different seed. --seeds S1 S2 ... runs every row once with each seed, interleaved (width after width, then
the next seed), and ends with each width's mean and range.

    python benchmarks/corpus_sizes.py --corpora names python-300k shakespeare --budget 100 --widths auto 64 128 192 256
    python benchmarks/corpus_sizes.py --corpora names --budget 30 --widths auto 128 192 256 --seeds 1 2 3

Run it on an idle machine: another process on the cores slows training more than it seems.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from charrnn.device import describe_cpu

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"
NAMES = REPO / "data" / "names.txt"
LICENCES = Path("/usr/share/common-licenses")
KB = 1000
# Files longer than this are left out of the Python corpora: pydoc_data/topics.py (757 KB of English help text in
# string literals) would be half of the 1 MB cut and all of its validation split.
LARGEST_SOURCE_FILE = 200 * KB


def _prefix(text: str, size: int) -> str:
    cut = text.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n") + 1]


def _python_source(size: int) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    files.sort(key=lambda p: hashlib.sha256(str(p.relative_to(stdlib)).encode()).hexdigest())
    pieces, total = [], 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(text) > LARGEST_SOURCE_FILE:
            continue
        pieces.append(text)
        total += len(text.encode("utf-8"))
        if total >= size:
            break
    return _prefix("\n".join(pieces), size)


def make_corpus(name: str, work: Path) -> Path:
    path = work / f"{name}.txt"
    if path.exists():
        return path
    if name == "names":
        text = NAMES.read_text(encoding="utf-8")
    elif name == "shakespeare":
        text = SHAKESPEARE.read_text(encoding="utf-8")
    elif name.startswith("shakespeare-"):
        text = _prefix(SHAKESPEARE.read_text(encoding="utf-8"), int(name.split("-")[1].rstrip("k")) * KB)
    elif name == "licences":
        text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(LICENCES.iterdir())
                         if p.is_file() and not p.is_symlink())
    elif name.startswith("python-"):
        size = name.split("-")[1]
        text = _python_source(int(size.rstrip("km")) * (KB * KB if size.endswith("m") else KB))
    else:
        raise SystemExit(f"unknown corpus {name!r}")
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run(config: Path, corpus: Path, budget: float, width: str, work: Path, extra: list[str]) -> dict:
    name = f"{corpus.stem}-{budget:g}s-{width}" + (f"-{hashlib.sha1(' '.join(extra).encode()).hexdigest()[:6]}"
                                                     if extra else "")
    run_dir = work / "runs" / name
    sets = ["--set", f"train.time_budget={budget}"]
    if width != "auto":
        sets += ["--set", f"model.hidden_size={width}"]
    for item in extra:
        sets += ["--set", item]
    cmd = [sys.executable, "-m", "charrnn", "train", "--config", str(config), "--data", str(corpus),
           "--run-dir", str(run_dir), "--overwrite", "-q", *sets]
    subprocess.run(cmd, check=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = min(metrics, key=lambda m: m["val_loss"])
    last = metrics[-1]
    evaluated = json.loads(subprocess.run([sys.executable, "-m", "charrnn", "eval", str(run_dir), "--json"],
                                          check=True, capture_output=True, text=True).stdout)
    saved = __import__("yaml").safe_load((run_dir / "config.yaml").read_text())
    chars = corpus.stat().st_size
    train_chars = (1 - saved["data"]["val_fraction"]) * chars
    step_chars = saved["train"]["batch_size"] * saved["train"]["seq_length"]
    return {"corpus": corpus.stem, "bytes": chars, "budget": budget, "width": saved["model"]["hidden_size"],
            "asked": width, "dropout": saved["model"]["dropout"], "lr": saved["train"]["lr"],
            "batching": saved["train"]["batching"], "ema": saved["train"].get("ema"),
            "weight_decay": saved["train"]["weight_decay"], "extra": extra, "steps": last["step"],
            "epochs": round(last["step"] * step_chars / train_chars, 2), "chars_per_sec": round(last["chars_per_sec"]),
            "best_val": round(best["val_loss"], 4), "best_step": best["step"], "last_val": round(last["val_loss"], 4),
            "last_train": round(last["train_loss"], 4), "stopped_by": last.get("stopped_by", ""),
            "eval_default": round(evaluated["loss"], 4), "cpu": describe_cpu(), **_each_scored(metrics)}


def _each_scored(metrics: list[dict]) -> dict:
    """Under train.ema, the best evaluation of the average alone and of the weights alone (the run keeps the better
    of the two at each evaluation): what the run would have scored with the average always, or never."""
    if "val_loss_average" not in metrics[-1]:
        return {}
    scored = [m for m in metrics if "val_loss_average" in m]
    return {"best_average": round(min(m["val_loss_average"] for m in scored), 4),
            "best_weights": round(min(m["val_loss_weights"] for m in scored), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", nargs="+", default=["names", "python-300k", "shakespeare"])
    parser.add_argument("--budget", type=float, default=100)
    parser.add_argument("--widths", nargs="+", default=["auto", "64", "128", "192", "256"])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "shakespeare.yaml")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more config overrides")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "charrnn-sizes")
    parser.add_argument("--out", type=Path, default=None, help="append rows to this JSON-lines file")
    parser.add_argument("--seeds", nargs="+", type=int, default=[None],
                        help="run every row with each of these seeds (default: the config's); print the means")
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}", flush=True)
    print(f"{'corpus':<16}{'KB':>6}{'budget':>7}{'width':>6}{'steps':>7}{'epochs':>7}{'chars/s':>9}"
          f"{'best (step)':>16}{'last (step)':>16}{'train':>7}{'eval':>8}  batches, average", flush=True)
    evals: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for corpus_name in args.corpora:
        corpus = make_corpus(corpus_name, args.work)
        for seed, width in [(seed, w) for seed in args.seeds for w in args.widths]:
            extra = args.extra + ([f"seed={seed}"] if seed is not None else [])
            row = run(args.config, corpus, args.budget, width, args.work, extra)
            evals.setdefault((row["corpus"], width), []).append((row["width"], row["eval_default"]))
            average = f", ema={row['ema']:g}" if row["ema"] else ""
            if "best_average" in row:
                average += f" (average alone {row['best_average']:.4f}, weights alone {row['best_weights']:.4f})"
            print(f"{row['corpus']:<16}{row['bytes'] // KB:>6}{row['budget']:>7g}{row['width']:>6}{row['steps']:>7}"
                  f"{row['epochs']:>7}{row['chars_per_sec']:>9,}{row['best_val']:>9.4f} ({row['best_step']:>5})"
                  f"{row['last_val']:>9.4f} ({row['steps']:>5}){row['last_train']:>7.3f}{row['eval_default']:>8.4f}"
                  f"  {row['batching']}{average}"
                  f"{'  ' + row['stopped_by'] if row['stopped_by'] else ''}", flush=True)
            if args.out:
                with args.out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    if len(args.seeds) > 1:
        print(f"\n{'corpus':<16}{'width':>6}{'runs':>5}{'mean eval':>11}{'range':>18}  widths trained", flush=True)
        for (corpus_name, width), results in evals.items():
            losses = [loss for _, loss in results]
            trained = sorted({w for w, _ in results})
            print(f"{corpus_name:<16}{width:>6}{len(losses):>5}{sum(losses) / len(losses):>11.4f}"
                  f"{min(losses):>9.4f}-{max(losses):.4f}  {', '.join(map(str, trained))}", flush=True)


if __name__ == "__main__":
    main()
