"""`charrnn eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charrnn.cli.typer_app import (
    CACHE_HELP,
    PRECISION_HELP,
    app,
    check_split,
    handles_errors,
    metrics_table,
    print_notes,
)
from charrnn.data.run_corpus import TOO_SHORT, run_split_ids, through_cache
from charrnn.errors import UserError
from charrnn.paths import user_path


@app.command("eval")
@handles_errors
def eval_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="train | val | test of the run's corpus.")] = "val",
    data: Annotated[Path | None, typer.Option("--data", help="Score this text file (or folder) instead of a split, "
                                              "with the run's vocabulary.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best (best.pt: the lowest val loss; last.pt "
                                            "where there is none yet) | last | PATH.")] = "best",
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    precision: Annotated[str, typer.Option("--precision", help=PRECISION_HELP)] = "fp32",
    cache: Annotated[Path | None, typer.Option("--cache", help=CACHE_HELP, show_default=False)] = None,
) -> None:
    """Report loss (nats/char), bits per character, perplexity and accuracy on held-out text.

    Example: charrnn eval runs/shakespeare --split val --json
    """
    from charrnn.data.cache import load_corpus
    from charrnn.device import inference_precision
    from charrnn.trained import load

    run, data = user_path(run), data and user_path(data)
    check_split(split)
    m = load(run, checkpoint=checkpoint, device=device or "cpu")
    vocab, cfg = m.vocab, m.config
    precision = inference_precision(precision, m.device, cfg.model.cell)  # refused before the corpus is read
    notes: list[str] = []
    if data is not None:
        if data.is_file() and data.stat().st_size == 0:
            raise UserError(f"--data {data} is empty; {TOO_SHORT}")
        # The same encoder and memory map as training, with the run's vocabulary: an unseen character is named.
        corpus = through_cache(lambda folder: load_corpus(data, folder, vocab, separator=cfg.data.separator), cfg, run,
                               cache, notes)
        ids, source = corpus.ids, str(data)
        if len(ids) < 2:
            raise UserError(f"--data {data} holds {len(ids)} character; {TOO_SHORT}")
    else:
        ids, source = run_split_ids(run, cfg, vocab, split, "--data FILE", cache=cache, notes=notes,
                                    recorded=m.state.get("corpus"))
    print_notes(notes)
    metrics = m.evaluate(ids, precision=precision)
    if as_json:
        print(json.dumps(metrics.to_dict()))
        return
    Console(highlight=False).print(metrics_table(f"{run}: {source}", metrics, "chars", f"{metrics.chars:,}"))
