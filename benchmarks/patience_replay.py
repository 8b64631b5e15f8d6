"""Early-stopping rules replayed on runs that trained without one: where would each have stopped, how far above
its best was that last evaluation, and how much of the run's best did it miss?

A rule only decides when to stop; until then the run is the same. So one run per text with `train.patience=null`
and `train.patience_rises=null` (its whole budget) answers, from its metrics.jsonl, what every rule would have done:

    python benchmarks/corpus_sizes.py --corpora names licences python-300k --budget 100 --widths auto \
        --set train.patience=null --set train.patience_rises=null --seeds 1337 1 2
    python benchmarks/patience_replay.py /tmp/charrnn-sizes/runs/*-100s-auto-*

`--every 2` replays every second evaluation only (runs evaluated every 125 steps, as if every 250).

Rules: "pN" stops after N evaluations without a better val loss (train.patience: N); "pN from F" only once the
fraction F of the run is done (train.patience_from: F; the fraction of the time budget, from each record's
elapsed_s, and the budget from the run's config.yaml); "rise R" also stops, from then on, at an evaluation more
than R above the best (not a charrnn setting: a rule tried and not shipped); "min D" counts an evaluation that
beats the best by D or less as one without a better val loss (train.patience_min_delta: D); "upN" also stops after
N evaluations in a row that each scored worse than the one before (train.patience_rises: N). Per run and rule: the last
evaluation above the best so far ("ends +x") and the best lost against the whole run's ("lost y"). Needs no
torch: it reads files only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

# (patience, patience_from, rise, patience_min_delta, ups)
RULES = ((4, 0.5, None, 0.0, None), (4, 0.5, None, 0.001, None), (3, 0.5, None, 0.001, None),
         (4, 0.5, 0.02, 0.001, None), (4, 0.5, None, 0.001, 3), (4, 0.5, None, 0.001, 2),
         (4, 0.6, None, 0.001, 2))  # the last: as both Shakespeare configs ship


def replay(records: list[dict], budget: float | None, patience: int, start: float,
           rise: float | None, min_delta: float = 0.0, ups: int | None = None) -> tuple[float, float, int]:
    """(last evaluation above the best so far, best lost against the whole run's, step it stopped at)."""
    best, since, rising, previous, stop = float("inf"), 0, 0, float("inf"), records[-1]
    # A run that max_steps/max_epochs ended was that far along by its steps, as charrnn's Trainer counts (the larger).
    # One that a stop rule ended before its step limit is counted by its time alone: replay runs without a stop.
    total = records[-1]["step"] if records[-1].get("stopped_by") in ("max_steps", "max_epochs") else None
    for record in records:
        loss = record["val_loss"]
        since = 0 if loss < best - min_delta else since + 1  # as charrnn's Validation.record counts ...
        rising = rising + 1 if loss > previous else 0  # ... and its evals_rising
        best, previous = min(best, loss), loss
        done = max(record["elapsed_s"] / budget if budget else 1.0, record["step"] / total if total else 0.0)
        risen = rise is not None and loss > best + rise
        climbing = ups is not None and rising >= ups
        if (since >= patience or risen or climbing) and done >= start:
            stop = record
            break
    return stop["val_loss"] - best, best - min(r["val_loss"] for r in records), stop["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.jsonl and config.yaml)")
    parser.add_argument("--every", type=int, default=1, help="replay every K-th evaluation only (and the last): "
                        "runs evaluated every 125 steps replayed as if every 250 with --every 2")
    args = parser.parse_args()
    worst = {rule: [0.0, 0.0] for rule in RULES}
    print(f"{'run':36} evals  whole run: ends +x  | " + " | ".join(f"{_name(rule)}: ends, lost" for rule in RULES))
    for run in args.runs:
        metrics = run / "metrics.jsonl"
        if not metrics.is_file():
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        records = [r for i, r in enumerate(records, 1) if i % args.every == 0 or i == len(records)]
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
    patience, start, rise, min_delta, ups = rule
    return (f"p{patience}" + (f" from {start:g}" if start else "") + (f" rise {rise:g}" if rise else "")
            + (f" min {min_delta:g}" if min_delta else "") + (f" up{ups}" if ups else ""))


if __name__ == "__main__":
    main()
