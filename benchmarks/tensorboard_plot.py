"""A picture of what TensorBoard's Scalars tab shows for one or more runs, read from their event files.

Panels: loss (train per step, smoothed as TensorBoard smooths it, and val), val bits per character,
val accuracy, learning rate, gradient norm and training speed. Several runs share the panels, one colour each.

    pip install -e ".[plot]"       # matplotlib
    python benchmarks/tensorboard_plot.py runs/shakespeare-lstm runs/shakespeare-gru --out docs/tensorboard.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SMOOTHED = {"train/loss", "train/grad_norm", "train/chars_per_sec"}  # noisy per-step series
PANELS = [  # (title, [(tag, label)], y label)
    ("loss", [("train/loss", "train"), ("val/loss", "val")], "nats / char"),
    ("val/bpc", [("val/bpc", "val")], "bits / char"),
    ("val/accuracy", [("val/accuracy", "val")], "next-char accuracy"),
    ("train/lr", [("train/lr", "train")], "learning rate"),
    ("train/grad_norm", [("train/grad_norm", "train")], "norm before clipping"),
    ("train/chars_per_sec", [("train/chars_per_sec", "train")], "chars / s"),
]


def smooth(values: list[float], weight: float = 0.6) -> list[float]:
    """TensorBoard's default smoothing: an exponential moving average, debiased for the first points."""
    out, last = [], 0.0
    for n, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**n))
    return out


def read_scalars(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    series = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        series[tag] = ([e.step for e in events], [e.value for e in events])
    return series


def plot(run_dirs: list[Path], out: Path, smoothing: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    runs = {run_dir.name: read_scalars(run_dir) for run_dir in run_dirs}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, tags, ylabel) in zip(axes.flat, PANELS, strict=True):
        for i, (name, series) in enumerate(runs.items()):
            colour = colours[i % len(colours)]
            for tag, label in tags:
                if tag not in series:
                    continue
                steps, values = series[tag]
                legend = f"{name} {label}" if len(tags) > 1 else name
                if tag in SMOOTHED and smoothing > 0:  # as TensorBoard draws it: faint raw curve, smoothed on top
                    ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
                    ax.plot(steps, smooth(values, smoothing), color=colour, linewidth=1.6, label=legend)
                elif tag.startswith("val/"):  # one point an eval, drawn over the train curve
                    ax.plot(steps, values, "--o" if len(tags) > 1 else "-o", color=colour, markersize=5,
                            markeredgecolor="white", linewidth=1.4, label=legend, zorder=3)
                else:
                    ax.plot(steps, values, color=colour, linewidth=1.6, label=legend)
        ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    finals = []
    for name, series in runs.items():
        if "val/bpc" in series:
            steps, values = series["val/bpc"]
            finals.append(f"{name}: val bpc {values[-1]:.3f} at step {steps[-1]}")
    fig.suptitle("TensorBoard scalars  —  " + ";  ".join(finals), fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (runs/NAME) holding event files")
    parser.add_argument("--out", type=Path, default=Path("docs/tensorboard.png"), help="PNG to write")
    parser.add_argument("--smoothing", type=float, default=0.6, help="as TensorBoard's smoothing slider")
    args = parser.parse_args()
    for run_dir in args.runs:
        if not any(run_dir.glob("events.out.tfevents.*")):
            sys.exit(f"error: no TensorBoard event files in {run_dir}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit('error: this script needs matplotlib: pip install -e ".[plot]"')
    plot(args.runs, args.out, args.smoothing)


if __name__ == "__main__":
    main()
