"""Train (or reuse) a 2x256 LSTM on ~1 MB of Python standard-library source and report the units `charrnn inspect`
finds: for each text property, the unit whose activation correlates most with it.

    python benchmarks/inspect_units.py --corpus /tmp/pystd.txt              # build the corpus only
    python benchmarks/inspect_units.py --corpus /tmp/pystd.txt --run runs/pystd   # report (trains first if missing)

The corpus is the standard library's top-level .py files, in name order, up to --chars characters; it is
written outside the repository (never commit it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sysconfig
import time
from pathlib import Path

TRAIN_SETTINGS = ["train.time_budget=null", "train.max_steps=5000", "train.eval_every=1000",
                  "train.checkpoint_every=1000", "train.precision=fp32", "log.sample_every=0"]


def build_corpus(out: Path, chars: int = 1_000_000) -> Path:
    """Concatenate the standard library's top-level .py files (name order) into `out`, up to `chars` characters."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= chars:
            break
    corpus = "".join(parts)[:chars]
    out.write_text(corpus, encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/pystd.txt"))
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--run", type=Path, default=None, help="run folder to inspect (trained here if missing)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pystd-inspect.html"))
    args = parser.parse_args()
    if not args.corpus.is_file():
        build_corpus(args.corpus, args.chars)
        print(f"corpus: {args.corpus} ({args.corpus.stat().st_size:,} bytes)")
    if args.run is None:
        return
    if not (args.run / "checkpoints").is_dir():
        cmd = ["charrnn", "train", "--config", "configs/shakespeare-10min.yaml", "--data", str(args.corpus),
               "--run-dir", str(args.run), "--quiet"]
        for setting in TRAIN_SETTINGS:
            cmd += ["--set", setting]
        print("$", " ".join(cmd))
        subprocess.run(cmd, check=True)
    cmd = ["charrnn", "inspect", str(args.run), "--out", str(args.out)]
    print("$", " ".join(cmd))
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"page {args.out}: {args.out.stat().st_size:,} bytes in {time.perf_counter() - start:.2f} s (wall)")
    data = json.loads(subprocess.run(["charrnn", "inspect", str(args.run), "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    print(f"{data['source']}: mean {data['bpc']:.3f} bpc; units by |r| (L1:37 is h, L1:c37 is tanh(c)):")
    for prop, units in data["units"].items():
        print(f"  {prop:<18} " + "  ".join(f"{u['unit']:<8} {u['r']:+.2f}" for u in units))


if __name__ == "__main__":
    main()
