"""The `charrnn` command line: parses, validates, calls the library, prints with Rich."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from charrnn.config import MAX_SEED
from charrnn.errors import ECHO_LIMIT, TrainingFailed, UserError, shorten

# click's UsageError, whether typer uses click or its own copy of it
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _OneLineUsageErrors(TyperGroup):
    """Click's own usage errors (unknown flag, missing value, bad number) end as charrnn's do: one line, exit 2."""

    def make_context(self, *args, **kwargs):
        with _usage_errors_in_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _usage_errors_in_one_line():
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_errors_in_one_line():
    try:
        yield
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `charrnn`: typer shows the help
            raise
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _err(exc.format_message() + hint)
        raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="charrnn",
    help="Train character-level RNN / GRU / LSTM language models, sample from them and evaluate them.\n\n"
    "Example: charrnn train --config configs/ihello.yaml && charrnn sample runs/ihello --prime h --greedy",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}


def _one_line(message: str) -> str:
    """Control characters (say a newline in a file name) shown escaped, so that a message stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in message)


def _err(message: str) -> None:
    # Whatever a message repeats of the user's input (a path, a value) is cut to ~200 characters a word.
    message = " ".join(shorten(word) for word in _one_line(shorten(message, 20 * ECHO_LIMIT)).split(" "))
    # A Text is printed as is: no markup or :emoji: codes are read from file names in the message.
    text = Text.assemble(("error:", "bold red"), " ", message)
    Console(stderr=True, highlight=False, soft_wrap=True).print(text)


def _speaks_for_the_job() -> bool:
    """Under torchrun every rank stops at once; rank 0 alone tells the user why (else one line per rank)."""
    return os.environ.get("RANK", "0") == "0"


def _handles_errors(fn):
    """User mistakes end in one line and exit 2; failures of the work in one line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from charrnn.training.signals import Interrupted

        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if _state["debug"]:
                raise
            _err(str(exc))
            raise typer.Exit(2) from None
        except TrainingFailed as exc:
            if _state["debug"]:
                raise
            if _speaks_for_the_job():
                _err(str(exc))
            raise typer.Exit(1) from None
        except BrokenPipeError:
            # The reader went away (e.g. `charrnn inspect RUN --json | head`): stop quietly, and keep Python
            # from complaining about stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:  # e.g. the disk filled up while writing logs: the work failed; say what and where
            if _state["debug"]:
                raise
            if exc.errno == errno.ENAMETOOLONG:  # a path the user gave: their mistake, not a failure of the work
                name = str(exc.filename or "")
                _err(f"path too long ({len(name):,} characters): {name}; use a shorter one (the system allows "
                     "255 bytes a name)")
                raise typer.Exit(2) from None
            _err(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            raise typer.Exit(1) from None
        except Interrupted as exc:
            if not _speaks_for_the_job():
                raise typer.Exit(exc.exit_code) from None
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"interrupted at step {exc.step}; checkpoint saved. Resume with: "
                f"charrnn train --resume --run-dir {shlex.quote(str(exc.run_dir))}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug


@app.command()
@_handles_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (configs/ihello.yaml).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set train.lr=0.01 "
                                                   "(repeatable).")] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Text file or folder to train on (sets data.path); repeat it for several. A folder is read "
        "recursively in sorted path order; pick its files with --set data.include='**/*.txt'.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name: the run folder is <log.dir>/NAME.")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run folder (instead of --name).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    init_from: Annotated[Path | None, typer.Option(
        "--init-from", help="Fine-tune: start a new run (step 0, fresh optimizer and schedule) from the weights of "
        "this run (its best.pt, else last.pt) or checkpoint file, with its model section; characters new in the "
        "corpus are added to the vocabulary.")] = None,
) -> None:
    """Train a model on a text file or folder; checkpoints, metrics and TensorBoard logs go into the run folder.

    Example: charrnn train --config configs/shakespeare.yaml --data ../shared/data/tinyshakespeare.txt

    Example: charrnn train --config configs/shakespeare.yaml --data src/ --set data.include='**/*.py'

    Example: charrnn train --config configs/shakespeare.yaml --data sonnets.txt --init-from runs/shakespeare
    --set train.patience=5 --name sonnets
    """
    from charrnn.training.loop import train as run_training
    from charrnn.training.run_config import training_config

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")
    data_arg = data[0] if data and len(data) == 1 else data or None
    cfg, run_dir = training_config(config, list(set_ or []), data=data_arg, name=name, run_dir=run_dir, resume=resume,
                                   init_from=init_from)
    result = run_training(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite, quiet=quiet, device=device)
    if result.val is not None and not quiet and result.is_main:  # under torchrun, one summary
        out = Console(stderr=True, highlight=False)
        out.print(_metrics_table(f"{result.run_dir} after {result.step} steps ({result.elapsed_s:.1f} s)",
                                 result.val, "best val loss", f"{result.best_val_loss:.4f}"))
        if result.stopped_by == "early_stop":
            out.print(f"stopped by: early stop ({cfg.train.patience} evaluations without a better val loss)",
                      markup=False)
        out.print(f"sample it: charrnn sample {result.run_dir}", markup=False)


def _metrics_table(title: str, metrics, extra_column: str, extra_value: str) -> Table:
    """One row of evaluation metrics (as `train` ends and `eval` reports them) plus one column of context."""
    table = Table(title=title)
    for col in ("loss (nats/char)", "bpc", "perplexity", "accuracy", extra_column):
        table.add_column(col, justify="right")
    table.add_row(f"{metrics.loss:.4f}", f"{metrics.bpc:.4f}", f"{metrics.perplexity:.3f}", f"{metrics.accuracy:.4f}",
                  extra_value)
    return table


_PRECISION_HELP = ("fp32 (default) | bf16 | fp16 (GPU) | auto (bf16 where native). Independent of the precision "
                   "the run was trained in.")


def _load_run(run: Path, checkpoint: str, device: str | None):
    from charrnn.trained import load

    m = load(run, checkpoint=checkpoint, device=device or "cpu")
    return m.state, m.net, m.vocab, m.config, m.device


@app.command()
@_handles_errors
def sample(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    prime: Annotated[str | None, typer.Option("--prime", "-p", help="Text to start from.")] = None,
    prime_file: Annotated[Path | None, typer.Option("--prime-file", help="Read the prime text from a file.")] = None,
    length: Annotated[int, typer.Option("--length", "-n", min=0, help="Characters to generate.")] = 500,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="> 0; lower is more conservative.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K likeliest characters.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus: smallest set with mass >= P.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the likeliest character.")] = False,
    num_samples: Annotated[int, typer.Option("--num-samples", min=1, help="Independent samples, one batch.")] = 1,
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
    precision: Annotated[str, typer.Option("--precision", help=_PRECISION_HELP)] = "fp32",
) -> None:
    """Generate text from a trained run, streamed to stdout as it is produced.

    Example: charrnn sample runs/shakespeare --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95

    Example: charrnn sample runs/names --stop "\\n" --num-samples 64 --novelty
    """
    from charrnn.device import inference_precision
    from charrnn.memory import check_sampling_fits
    from charrnn.sampling import Samples, SamplingOptions, decode_escapes, generate

    opts = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
    if prime is not None and prime_file is not None:
        raise UserError("pass --prime or --prime-file, not both")
    stop = decode_escapes(stop) if stop else None
    state, model, vocab, cfg, dev = _load_run(run, checkpoint, device)
    precision = inference_precision(precision, dev, cfg.model.cell)
    check_sampling_fits(model, num_samples, dev)
    if prime_file is not None:
        prime = _read_file_option(prime_file, "--prime-file", "put the text to start from in it, or use --prime TEXT")
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

    corpus = _run_corpus(run, cfg, vocab, "--novelty compares samples with it: restore it, or sample without "
                                          "--novelty")
    n_train = len(corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)["train"])
    return NoveltyIndex.for_corpus(corpus, n_train)


def _run_corpus(run: Path, cfg, vocab, fix: str):
    """The run's corpus, read through the cache the run used (never one in the current folder); a file of it
    that is gone is one line, ending with `fix`."""
    from charrnn.data.corpus import data_paths, open_corpus, run_cache_dir

    paths = data_paths(cfg)
    missing = [p for p in paths if not Path(p).exists()]
    if not paths or missing:
        raise UserError(f"the run's corpus {(missing or ['(none recorded)'])[0]!r} is not available; {fix}")
    return open_corpus(cfg, vocab, cache_dir=run_cache_dir(cfg, run))


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise UserError(f"--split must be train, val or test, got {split!r}")


_TOO_SHORT = "scoring needs at least 2 characters (each is predicted from the ones before it)"


def _split_ids(run: Path, cfg, vocab, split: str, alternative: str):
    """The ids of one split of the run's corpus (read through the cache the run used, never one in the current
    folder) and a description of it; `alternative` is the option to suggest when the corpus or the split is
    unavailable."""
    from charrnn.data.corpus import data_paths

    corpus = _run_corpus(run, cfg, vocab, f"pass the text with {alternative}")
    ids = corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)[split]
    where = ", ".join(data_paths(cfg))
    if len(ids) < 2:
        fraction = {"val": cfg.data.val_fraction, "test": cfg.data.test_fraction}.get(split)
        if fraction == 0:
            raise UserError(f"the {split} split of {where} is empty (data.{split}_fraction is 0); "
                            f"use --split train or {alternative}")
        share = f"data.{split}_fraction={fraction:g}" if fraction else "what val and test leave"
        raise UserError(f"the {split} split of {where} holds {len(ids)} character ({share} of "
                        f"{len(corpus.ids):,}); {_TOO_SHORT}: use --split train or {alternative}")
    return ids, f"{split} split of {where}"


@app.command("eval")
@_handles_errors
def eval_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="train | val | test of the run's corpus.")] = "val",
    data: Annotated[Path | None, typer.Option("--data", help="Score this text file (or folder) instead of a split, "
                                              "with the run's vocabulary.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best (best.pt: the lowest val loss; last.pt "
                                            "where there is none yet) | last | PATH.")] = "best",
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    precision: Annotated[str, typer.Option("--precision", help=_PRECISION_HELP)] = "fp32",
) -> None:
    """Report loss (nats/char), bits per character, perplexity and accuracy on held-out text.

    Example: charrnn eval runs/shakespeare --split val --json
    """
    from charrnn.data.cache import load_corpus
    from charrnn.data.corpus import run_cache_dir
    from charrnn.device import inference_precision
    from charrnn.evaluate import evaluate

    _check_split(split)
    _, model, vocab, cfg, dev = _load_run(run, checkpoint, device)
    precision = inference_precision(precision, dev, cfg.model.cell)
    if data is not None:
        if data.is_file() and data.stat().st_size == 0:
            raise UserError(f"--data {data} is empty; {_TOO_SHORT}")
        # The same encoder and memory map as training, with the run's vocabulary: an unseen character is named.
        ids, source = load_corpus(data, run_cache_dir(cfg, run), vocab, separator=cfg.data.separator).ids, str(data)
        if len(ids) < 2:
            raise UserError(f"--data {data} holds {len(ids)} character; {_TOO_SHORT}")
    else:
        ids, source = _split_ids(run, cfg, vocab, split, "--data FILE")
    metrics = evaluate(model, ids, device=dev, precision=precision)
    if as_json:
        print(json.dumps(metrics.to_dict()))
        return
    Console(highlight=False).print(_metrics_table(f"{run}: {source}", metrics, "chars", f"{metrics.chars:,}"))


@app.command("inspect")
@_handles_errors
def inspect_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    text: Annotated[str | None, typer.Option("--text", help="Inspect this text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Inspect a text file.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="train | val | test of the run's corpus "
                                              "[default: val].", show_default=False)] = None,
    start: Annotated[int, typer.Option("--start", min=0, help="First character shown; the text before it "
                                       "warms the hidden state.")] = 0,
    length: Annotated[int | None, typer.Option("--length", "-n", min=1, help="Characters shown (at most 10,000) "
                                               "[default: 2,000].", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The page to write [default: RUN/inspect.html].",
                                             show_default=False)] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | PATH.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print the data (text, bits, top-5, ranked units) "
                                          "as JSON instead of writing the page.")] = False,
) -> None:
    """Write one HTML page that shows what each character cost the model and what its units track.

    Example: charrnn inspect runs/shakespeare --split val --length 2000 --out page.html
    """
    from charrnn.inspection.page import page_data, render_page, summary
    from charrnn.inspection.recording import describe_model, encode_window, record, shown_length, window
    from charrnn.run.checkpoint import resolve_checkpoint
    from charrnn.safe_files import atomic_write

    if sum(x is not None for x in (text, file, split)) > 1:
        raise UserError("pass one of --text, --file and --split")
    if split is not None:
        _check_split(split)
    length = shown_length(text, start, length)
    if out is not None and not out.parent.is_dir():
        raise UserError(f"cannot write {out}: the folder {out.parent} does not exist; create it or pick another --out")
    state, model, vocab, cfg, _ = _load_run(run, checkpoint, "cpu")
    if text is not None or file is not None:
        body = text if text is not None else _read_file_option(file, "--file", "pass a file with some text")
        shown, warmup = encode_window(vocab, body, start, length)
        source = "--text" if text is not None else str(file)
    else:
        ids, source = _split_ids(run, cfg, vocab, split or "val", "--file FILE")
        shown, warmup = window(ids, start, length)
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
    atomic_write(out, lambda f: f.write(page))
    if as_json:
        return
    console = Console(highlight=False, soft_wrap=True)
    bpc = f"{data['bpc']:.3f} bpc" if data["bpc"] is not None else "no character scored"
    console.print(f"wrote {out} ({len(page) / 1e6:.2f} MB): mean {bpc} over {data['chars_scored']:,} characters "
                  f"of {source}; open it in a browser", markup=False)
    for prop, units in data["units"].items():
        console.print(f"  {prop:<18} {units[0]['unit']:<9} r = {units[0]['r']:+.2f}", markup=False)


def _read_file_option(path: Path, flag: str, if_empty: str) -> str:
    """The text of a file named by a flag, with messages that name the flag (read_text's speak of training data)."""
    from charrnn.data.text import read_text

    if not path.exists():
        raise UserError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise UserError(f"{flag} {path} is not a file; pass a UTF-8 text file")
    if path.stat().st_size == 0:
        raise UserError(f"{flag} {path} is empty; {if_empty}")
    return read_text(path)


@app.command()
@_handles_errors
def info(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.", show_default=False)],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | PATH.")] = "last",
) -> None:
    """Show a run's config, vocabulary, parameter table and progress.

    Example: charrnn info runs/ihello
    """
    from charrnn.data.corpus import run_folder
    from charrnn.model import parameter_table
    from charrnn.run import status as run_status
    from charrnn.vocab import visible_char

    state, model, vocab, cfg, _ = _load_run(run, checkpoint, "cpu")
    console = Console(highlight=False)
    sections: dict[str, dict] = {"run": {}}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            sections[key] = value
        else:
            sections["run"][key] = value
    config = Table(title="config", title_justify="left", title_style="bold", show_header=False)
    config.add_column("section", style="bold")
    config.add_column("settings")
    for title, values in sections.items():
        settings = Text()
        for key, value in values.items():
            if value is not None:  # unset options (e.g. no time budget) would only add noise
                shown = str(value).lower() if isinstance(value, bool) else str(value)  # as YAML and --set spell it
                settings.append(f"{key}=", style="dim").append(shown).append("  ")
        config.add_row(title, settings)
    console.print(config)

    preview = " ".join(visible_char(c) for c in vocab.chars[:80]) + (" ..." if len(vocab) > 80 else "")
    console.print(f"[bold]vocabulary[/] ({len(vocab)} characters)")
    console.print(Text(preview))

    params = Table(title="parameters", title_justify="left", title_style="bold")
    params.add_column("name")
    params.add_column("shape")
    params.add_column("count", justify="right")
    rows = parameter_table(model)
    for pname, shape, count in rows:
        params.add_row(pname, str(list(shape)), f"{count:,}")
    params.add_row("[bold]total[/]", "", f"[bold]{sum(c for _, _, c in rows):,}[/]")
    console.print(params)

    progress = Table(title="progress", title_justify="left", title_style="bold")
    for col in ("steps done", "best val loss", "val loss", "val bpc", "val accuracy", "time"):
        progress.add_column(col, justify="right")
    best, last = state.get("best_val"), state.get("val") or {}
    of = f" / {cfg.train.max_steps}" if cfg.train.max_steps else ""

    def number(value) -> str:
        return f"{value:.4f}" if isinstance(value, float | int) and math.isfinite(value) else "-"

    progress.add_row(f"{state['step']}{of}", number(best), number(last.get("loss")), number(last.get("bpc")),
                     number(last.get("accuracy")), f"{state.get('elapsed', 0.0):.1f} s")
    console.print(progress)
    run_dir = run_folder(run)
    if (run_dir / run_status.FILENAME).is_file():
        console.print(Text.assemble(("status ", "bold"), run_status.describe(run_dir)))


def run() -> None:
    app()
