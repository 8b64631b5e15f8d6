"""The `charrnn` command line: the Typer app, one-line errors and exit codes, and what the commands share.
Each command lives in its own module (train_command.py, sample_command.py, ...): it parses and validates its
options, calls the library and prints with Rich."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from charrnn.errors import ECHO_LIMIT, Interrupted, TrainingFailed, UserError, shorten
from charrnn.paths import shown_path

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


def speaks_for_the_job() -> bool:
    """Under torchrun every rank stops at once; rank 0 alone tells the user why (else one line per rank)."""
    return os.environ.get("RANK", "0") == "0"


def handles_errors(fn):
    """User mistakes end in one line and exit 2; failures of the work in one line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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
            if speaks_for_the_job():
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
            if not speaks_for_the_job():
                raise typer.Exit(exc.exit_code) from None
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"interrupted at step {exc.step}; checkpoint saved. Resume with: "
                f"charrnn train --resume --run-dir {shown_path(exc.run_dir)}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug


def metrics_table(title: str, metrics, extra_column: str, extra_value: str) -> Table:
    """One row of evaluation metrics (as `train` ends and `eval` reports them) plus one column of context."""
    table = Table(title=title)
    for col in ("loss (nats/char)", "bpc", "perplexity", "accuracy", extra_column):
        table.add_column(col, justify="right")
    table.add_row(f"{metrics.loss:.4f}", f"{metrics.bpc:.4f}", f"{metrics.perplexity:.3f}", f"{metrics.accuracy:.4f}",
                  extra_value)
    return table


PRECISION_HELP = ("fp32 (default) | bf16 | fp16 (GPU) | auto (bf16 where native). Independent of the precision "
                   "the run was trained in.")


CACHE_HELP = ("Keep the run's encoded text in this folder [default: the run's own cache while it exists; else it is "
              "encoded without a cache].")


def print_notes(notes: list[str]) -> None:
    """Notes and warnings of a read-only command, one line each on stderr (stdout stays the command's output)."""
    for note in notes:
        Console(stderr=True, highlight=False, soft_wrap=True).print(_one_line(note), markup=False)


def load_run(run: Path, checkpoint: str, device: str | None):
    from charrnn.trained import load

    m = load(run, checkpoint=checkpoint, device=device or "cpu")
    return m.state, m.net, m.vocab, m.config, m.device


def check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise UserError(f"--split must be train, val or test, got {split!r}")


def read_file_option(path: Path, flag: str, if_empty: str) -> str:
    """The text of a file named by a flag, with messages that name the flag (read_text's speak of training data)."""
    from charrnn.data.text import read_text

    if not path.exists():
        raise UserError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise UserError(f"{flag} {path} is not a file; pass a UTF-8 text file")
    if path.stat().st_size == 0:
        raise UserError(f"{flag} {path} is empty; {if_empty}")
    return read_text(path)


def run() -> None:
    app()
