"""`charrnn inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charrnn.cli.typer_app import CACHE_HELP, app, check_split, handles_errors, load_run, print_notes, read_file_option
from charrnn.data.run_corpus import run_split_ids
from charrnn.errors import UserError
from charrnn.paths import user_path


@app.command("inspect")
@handles_errors
def inspect_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    text: Annotated[str | None, typer.Option("--text", help="Inspect this text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Inspect a text file.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="train | val | test of the run's corpus "
                                              "[default: val].", show_default=False)] = None,
    start: Annotated[int, typer.Option("--start", min=0, help="First character shown; the text before it "
                                       "warms the hidden state.")] = 0,
    length: Annotated[int | None, typer.Option("--length", min=1, help="Characters shown (at most 10,000) "
                                               "[default: 2,000].", show_default=False)] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="The page to write [default: RUN/inspect.html]: a new "
                                            "file, or a page charrnn wrote.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an --out file that charrnn did not write "
                                            "(never a checkpoint, a run's file or the text read).")] = False,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | PATH.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print the data (text, bits, top-5, ranked units) "
                                          "as JSON instead of writing the page.")] = False,
    cache: Annotated[Path | None, typer.Option("--cache", help=CACHE_HELP, show_default=False)] = None,
) -> None:
    """Write one HTML page that shows what each character cost the model and what its units track.

    Example: charrnn inspect runs/shakespeare --split val --length 2000 --out page.html
    """
    from charrnn.data.corpus import data_paths
    from charrnn.inspection.page import page_data, render_page, summary
    from charrnn.inspection.recording import describe_model, record, shown_length
    from charrnn.run.checkpoint import resolve_checkpoint
    from charrnn.safe_files import check_user_output, write_user_file

    run, file, out = user_path(run), file and user_path(file), out and user_path(out)
    if sum(x is not None for x in (text, file, split)) > 1:
        raise UserError("pass one of --text, --file and --split")
    if split is not None:
        check_split(split)
    length = shown_length(text, start, length)
    state, model, vocab, cfg, _ = load_run(run, checkpoint, "cpu")
    # never replaced, --overwrite or not: the run's corpus and the text inspected
    keep = [(p, "the run's corpus") for p in data_paths(cfg)] + ([(file, "the text inspected")] if file else [])
    if out is not None:
        check_user_output(out, overwrite=overwrite, keep=keep)  # refused before the slow part; checked again later
    shown, warmup, source = _inspected_window(run, cfg, vocab, state, text, file, split, start, length, cache)
    rec = record(model, shown, warmup)
    shown_text = vocab.decode(shown)
    where = f", characters {start:,} to {start + len(shown):,}" + (" (warmed on the text before)" if len(warmup)
                                                                    else "")
    info = {"run": str(run), "source": source + where, "start": start, "model": describe_model(model),
            "checkpoint": f"{resolve_checkpoint(run, checkpoint).name}, step {state['step']:,}"}
    if as_json:
        print(json.dumps(summary(rec, shown_text, vocab.chars, info), ensure_ascii=False))
        if out is None:
            return
    data = page_data(rec, shown_text, vocab.chars, info)
    if out is None:
        out = run / "inspect.html" if run.is_dir() else run.with_name(run.stem + "-inspect.html")
    page = render_page(data).encode("utf-8")
    out = write_user_file(out, page, overwrite=overwrite, keep=keep)
    if as_json:
        return
    _print_written(out, len(page), data, source)


def _inspected_window(run, cfg, vocab, state, text, file, split, start, length, cache):
    """The ids shown, the ids before them that warm the hidden state, and what they were read from."""
    from charrnn.inspection.recording import encode_window, window

    if text is not None or file is not None:
        body = text if text is not None else read_file_option(file, "--file", "pass a file with some text")
        shown, warmup = encode_window(vocab, body, start, length)
        return shown, warmup, "--text" if text is not None else str(file)
    notes: list[str] = []
    ids, source = run_split_ids(run, cfg, vocab, split or "val", "--file FILE", cache=cache, notes=notes,
                                recorded=state.get("corpus"))
    print_notes(notes)
    shown, warmup = window(ids, start, length)
    return shown, warmup, source


def _print_written(out: Path, size: int, data: dict, source: str) -> None:
    console = Console(highlight=False, soft_wrap=True)
    bpc = f"{data['bpc']:.3f} bpc" if data["bpc"] is not None else "no character scored"
    console.print(f"wrote {out} ({size / 1e6:.2f} MB): mean {bpc} over {data['chars_scored']:,} characters "
                  f"of {source}; open it in a browser", markup=False)
    for prop, units in data["units"].items():
        console.print(f"  {prop:<18} {units[0]['unit']:<9} r = {units[0]['r']:+.2f}", markup=False)
