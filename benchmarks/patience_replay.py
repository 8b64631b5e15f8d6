"""Early-stopping rules replayed on runs that trained without one: where would each have stopped, how far above
its best was that last evaluation, and how much of the run's best did it miss?

A rule only decides when to stop; until then the run is the same. So one run per text with `train.patience=null`
(its whole budget) answers, from its metrics.jsonl, what every rule would have done:

    python benchmarks/corpus_sizes.py --corpora names licences python-300k --budget 100 --widths auto \
        --set train.eval_every=250 --set train.patience=null --seeds 1337 1 2
    python benchmarks/patience_replay.py /tmp/charrnn-sizes/runs/*-100s-auto-*

Rules: "pN" stops after N evaluations without a better val loss (train.patience: N); "pN from F" only once the
fraction F of the run is done (train.patience_from: F; the fraction of the time budget, from each record's
elapsed_s, and the budget from the run's config.yaml); "rise R" also stops, from then on, at an evaluation more
than R above the best (not a charrnn setting: a rule tried and not shipped); "min D" counts an evaluation that
beats the best by D or less as one without a better val loss (train.patience_min_delta: D). Per run and rule: the last
evaluation above the best so far ("ends +x") and the best lost against the whole run's ("lost y"). Needs no
torch: it reads files only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

# (patience, patience_from, rise, patience_min_delta)
RULES = ((4, 0.0, None, 0.0), (3, 0.0, None, 0.0), (4, 0.5, None, 0.0), (3, 0.5, None, 0.0), (4, 0.5, 0.02, 0.0),
         (4, 0.5, None, 0.001), (4, 0.5, None, 0.002), (3, 0.5, None, 0.001))


def replay(records: list[dict], budget: float | None, patience: int, start: float,
           rise: float | None, min_delta: float = 0.0) -> tuple[float, float, int]:
    """(last evaluation above the best so far, best lost against the whole run's, step it stopped at)."""
    best, since, stop = float("inf"), 0, records[-1]
    for record in records:
        loss = record["val_loss"]
        since = 0 if loss < best - min_delta else since + 1  # as charrnn's Validation.record counts
        best = min(best, loss)
        done = record["elapsed_s"] / budget if budget else 1.0
        risen = rise is not None and loss > best + rise
        if (since >= patience or risen) and done >= start:
            stop = record
            break
    return stop["val_loss"] - best, best - min(r["val_loss"] for r in records), stop["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.jsonl and config.yaml)")
    args = parser.parse_args()
    worst = {rule: [0.0, 0.0] for rule in RULES}
    print(f"{'run':36} evals  whole run: ends +x  | " + " | ".join(f"{_name(rule)}: ends, lost" for rule in RULES))
    for run in args.runs:
        metrics = run / "metrics.jsonl"
        if not metrics.is_file():
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        budget = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("train", {}).get("time_budget")
        whole = records[-1]["val_loss"] - min(r["val_loss"] for r in records)
        cells = []
        for rule in RULES:
            ends, lost, step = replay(records, budget, *rule)
            worst[rule] = [max(worst[rule][0], ends), max(worst[rule][1], lost)]
            cells.append(f"+{ends:.3f}, {lost:.3f} @{step:>5}")
        print(f"{run.name[:36]:36} {len(records):>5}  +{whole:.3f} @{records[-1]['step']:>5}     | "
              + " | ".join(cells))
    print("worst: " + " | ".join(f"{_name(rule)}: ends +{w[0]:.3f}, lost {w[1]:.3f}" for rule, w in worst.items()))


def _name(rule: tuple) -> str:
    patience, start, rise, min_delta = rule
    return (f"p{patience}" + (f" from {start:g}" if start else "") + (f" rise {rise:g}" if rise else "")
            + (f" min {min_delta:g}" if min_delta else ""))


if __name__ == "__main__":
    main()
