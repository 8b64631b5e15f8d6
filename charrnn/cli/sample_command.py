"""`charrnn sample`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.typer_app import PRECISION_HELP, app, handles_errors, load_run, read_file_option
from charrnn.config import MAX_SEED
from charrnn.data.run_corpus import open_run_corpus
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
) -> None:
    """Generate text from a trained run, streamed to stdout as it is produced.

    Example: charrnn sample runs/shakespeare --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95

    Example: charrnn sample runs/names --stop "\\n" --num-samples 64 --novelty
    """
    from charrnn.device import inference_precision
    from charrnn.memory import check_sampling_fits
    from charrnn.sampling import Samples, SamplingOptions, decode_escapes, generate

    run, prime_file = user_path(run), prime_file and user_path(prime_file)
    opts = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
    if prime is not None and prime_file is not None:
        raise UserError("pass --prime or --prime-file, not both")
    stop = decode_escapes(stop) if stop else None
    state, model, vocab, cfg, dev = load_run(run, checkpoint, device)
    precision = inference_precision(precision, dev, cfg.model.cell)
    check_sampling_fits(model, num_samples, dev)
    if prime_file is not None:
        prime = read_file_option(prime_file, "--prime-file", "put the text to start from in it, or use --prime TEXT")
    if prime is None:
        prime = state.get("first_char") or vocab.chars[0]
    if prime == "":
        raise UserError("the prime text is empty; pass at least one character with --prime")
    vocab.encode(prime)  # a character outside the vocabulary is named before any output
    index = _novelty_index(run, cfg, vocab) if novelty else None  # a missing corpus is named before any output
    samples = Samples(prime, num_samples, stop)
    stream = num_samples == 1 and not as_json
    out = sys.stdout
    start = time.perf_counter()
    generated = 0
    if stream:
        out.write(prime)
        out.flush()
    for chars in generate(model, vocab, prime=prime, length=length, opts=opts, num_samples=num_samples,
                          seed=seed, device=dev, precision=precision):
        generated += num_samples
        pieces = samples.add(chars)
        if stream and pieces[0]:
            out.write(pieces[0])
            out.flush()
        if samples.done:
            break
    tails = samples.finish()
    speed = generated / max(time.perf_counter() - start, 1e-9)
    texts = samples.texts()
    reports = None
    if index is not None:
        from charrnn.novelty import novelty as novelty_of

        reports = [novelty_of(index, vocab, t, stop, done) for t, done in zip(texts, samples.stopped, strict=True)]
    if stream:
        out.write(tails[0] + "\n" + (reports[0].describe() + "\n" if reports else ""))
    elif as_json:
        result = {"samples": texts, "chars_per_sec": round(speed, 1)}
        if reports:
            result["novelty"] = [r.to_dict() for r in reports]
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        shown = [t + "\n" + r.describe() for t, r in zip(texts, reports, strict=True)] if reports else texts
        out.write(("\n" + "-" * 40 + "\n").join(shown) + "\n")
    out.flush()


def _novelty_index(run: Path, cfg, vocab):
    """The index of the run's training split that --novelty compares samples with."""
    from charrnn.novelty import NoveltyIndex

    corpus = open_run_corpus(run, cfg, vocab, "--novelty compares samples with it: restore it, or sample without "
                                          "--novelty")
    n_train = len(corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)["train"])
    return NoveltyIndex.for_corpus(corpus, n_train)
