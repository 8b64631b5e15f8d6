"""`charrnn export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charrnn.cli.typer_app import app, handles_errors


@app.command("export")
@handles_errors
def export_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="html: one self-contained page that samples in the "
                                     "browser | onnx: a single-step ONNX model (needs the export extra).")] = "html",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The file to write (default: RUN/<run name>.html, "
                                             "or .onnx).", show_default=False)] = None,
    weights: Annotated[str, typer.Option("--weights", help="fp32: greedy text equals `charrnn sample --greedy` | "
                                         "fp16: half the size, near-equal probabilities.")] = "fp32",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | PATH.")] = "best",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Write a trained model as one web page that samples in the browser (no network, works from disk), or as an
    ONNX model for a sampler in any language.

    Example: charrnn export runs/shakespeare --out shakespeare.html, then open shakespeare.html#prime=ROMEO:&run=1

    Example: charrnn export runs/shakespeare --format onnx --out shakespeare.onnx && python examples/sample_onnx.py
    shakespeare.onnx --prime ROMEO:
    """
    from charrnn.export import export

    done = export(run, fmt=fmt, out=out, weights=weights, checkpoint=checkpoint, overwrite=overwrite)
    how = ("open it in a browser; settings can follow # in its address: #prime=ROMEO:&length=300&greedy=1&run=1"
           if done.format == "html" else f"sample it: python examples/sample_onnx.py {done.path} --prime TEXT")
    Console(highlight=False, soft_wrap=True).print(f"wrote {done.path} ({done.size / 1e6:.2f} MB, {done.weights} "
                                                   f"weights, {done.checkpoint.name}); {how}", markup=False)
