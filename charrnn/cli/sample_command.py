"""`charrnn sample`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.typer_app import (
    CACHE_HELP,
    PRECISION_HELP,
    app,
    handles_errors,
    print_notes,
    read_file_option,
)
from charrnn.config import MAX_SEED
from charrnn.data.run_corpus import changed_corpus_note, open_run_corpus
from charrnn.errors import UserError
from charrnn.paths import user_path


@app.command()
@handles_errors
def sample(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    prime: Annotated[str | None, typer.Option("--prime", "-p", help="Text to start from.")] = None,
    prime_file: Annotated[Path | None, typer.Option("--prime-file", help="Read the prime text from a file.")] = None,
    length: Annotated[int, typer.Option("--length", min=0, help="Characters to generate in each sample.")] = 500,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="> 0; lower is more conservative.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K likeliest characters.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus: smallest set with mass >= P.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the likeliest character.")] = False,
    num_samples: Annotated[int, typer.Option("--num-samples", min=1, help="How many independent samples (one "
                                             "batch).")] = 1,
    stop: Annotated[str | None, typer.Option("--stop", help="End each sample at this string; escapes \\n \\t \\\\ "
                                             "\\xHH \\uHHHH are read.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=MAX_SEED, help="Make the output reproducible.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"samples\": [...], \"chars_per_sec\": ...}.")]
    = False,
    novelty: Annotated[bool, typer.Option(
        "--novelty", help="After each sample, the longest stretch it shares with the run's training text (length, "
        "start in the sample), and with --stop whether it is a whole record of that text ('in train') or 'new'. "
        "The first use builds an index beside the run's cached ids.")] = False,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best (best.pt: the lowest val loss; last.pt "
                                            "where there is none yet) | last | PATH.")] = "best",
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    precision: Annotated[str, typer.Option("--precision", help=PRECISION_HELP)] = "fp32",
    cache: Annotated[Path | None, typer.Option("--cache", help="With --novelty: " + CACHE_HELP,
                                               show_default=False)] = None,
) -> None:
    """Generate text from a trained run, streamed to stdout as it is produced.

    Example: charrnn sample runs/shakespeare --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95

    Example: charrnn sample runs/names --stop "\\n" --num-samples 64 --novelty
    """
    from charrnn.sampling import decode_escapes
    from charrnn.trained import load

    run, prime_file = user_path(run), prime_file and user_path(prime_file)
    if prime is not None and prime_file is not None:
        raise UserError("pass --prime or --prime-file, not both")
    stop = decode_escapes(stop) if stop else None
    m = load(run, checkpoint=checkpoint, device=device or "cpu")
    if prime_file is not None:
        prime = read_file_option(prime_file, "--prime-file", "put the text to start from in it, or use --prime TEXT")
    if prime == "":
        raise UserError("the prime text is empty; pass at least one character with --prime")
    # The options, the prime's characters and the memory are checked here, before any output; so is the corpus.
    stream = m.sample_stream(prime or "", length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                             seed=seed, num_samples=num_samples, stop=stop, precision=precision)
    index = _novelty_index(run, m.config, m.vocab, cache, m.state.get("corpus")) if novelty else None
    _print_samples(stream, as_json, index, m.vocab, stop)


def _print_samples(stream, as_json: bool, index, vocab, stop: str | None) -> None:
    """One sample streams to stdout as it is generated; several (or --json) are printed once finished."""
    live = stream.num_samples == 1 and not as_json
    out = sys.stdout
    start = time.perf_counter()
    for pieces in stream:
        if live and pieces[0]:
            out.write(pieces[0])
            out.flush()
    speed = stream.generated / max(time.perf_counter() - start, 1e-9)
    texts = stream.texts()
    reports = None
    if index is not None:
        from charrnn.novelty import novelty as novelty_of

        reports = [novelty_of(index, vocab, t, stop, done) for t, done in zip(texts, stream.stopped, strict=True)]
    if live:
        out.write("\n" + (reports[0].describe() + "\n" if reports else ""))
    elif as_json:
        result = {"samples": texts, "chars_per_sec": round(speed, 1)}
        if reports:
            result["novelty"] = [r.to_dict() for r in reports]
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        shown = [t + "\n" + r.describe() for t, r in zip(texts, reports, strict=True)] if reports else texts
        out.write(("\n" + "-" * 40 + "\n").join(shown) + "\n")
    out.flush()


def _novelty_index(run: Path, cfg, vocab, cache: Path | None, recorded: dict | None):
    """The index of the run's training split that --novelty compares samples with; notes (a changed corpus, no
    cache) go to stderr."""
    from charrnn.novelty import NoveltyIndex

    notes: list[str] = []
    corpus = open_run_corpus(run, cfg, vocab, "--novelty compares samples with it: restore it, or sample without "
                                          "--novelty", cache=cache, notes=notes)
    change = changed_corpus_note(recorded, corpus, "Novelty is measured against the text as it is now, not the "
                                 "text the run was trained on")
    print_notes(notes + ([change] if change else []))
    n_train = len(corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)["train"])
    return NoveltyIndex.for_corpus(corpus, n_train)
