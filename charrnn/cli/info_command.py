"""`charrnn info`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.cli.typer_app import app, handles_errors, load_run
from charrnn.paths import user_path


@app.command()
@handles_errors
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

    run = user_path(run)
    state, model, vocab, cfg, _ = load_run(run, checkpoint, "cpu")
    console = Console(highlight=False)
    console.print(config_table(cfg.to_dict()))
    preview = " ".join(visible_char(c) for c in vocab.chars[:80]) + (" ..." if len(vocab) > 80 else "")
    console.print(f"[bold]vocabulary[/] ({len(vocab)} characters)")
    console.print(Text(preview))
    console.print(parameters_table(parameter_table(model)))
    console.print(progress_table(state, cfg.train.max_steps))
    run_dir = run_folder(run)
    if (run_dir / run_status.FILENAME).is_file():
        console.print(Text.assemble(("status ", "bold"), run_status.describe(run_dir)))


def config_table(config: dict) -> Table:
    """One row a config section (top-level settings under "run"), its set values as key=value."""
    sections: dict[str, dict] = {"run": {}}
    for key, value in config.items():
        if isinstance(value, dict):
            sections[key] = value
        else:
            sections["run"][key] = value
    table = Table(title="config", title_justify="left", title_style="bold", show_header=False)
    table.add_column("section", style="bold")
    table.add_column("settings")
    for title, values in sections.items():
        settings = Text()
        for key, value in values.items():
            if value is not None:  # unset options (e.g. no time budget) would only add noise
                settings.append(f"{key}=", style="dim").append(setting_text(value)).append("  ")
        table.add_row(title, settings)
    return table


def parameters_table(rows: list[tuple[str, tuple, int]]) -> Table:
    table = Table(title="parameters", title_justify="left", title_style="bold")
    table.add_column("name")
    table.add_column("shape")
    table.add_column("count", justify="right")
    for name, shape, count in rows:
        table.add_row(name, str(list(shape)), f"{count:,}")
    table.add_row("[bold]total[/]", "", f"[bold]{sum(c for _, _, c in rows):,}[/]")
    return table


def progress_table(state: dict, max_steps: int | None) -> Table:
    table = Table(title="progress", title_justify="left", title_style="bold")
    for column in ("steps done", "best val loss", "val loss", "val bpc", "val accuracy", "time"):
        table.add_column(column, justify="right")
    best, last = state.get("best_val"), state.get("val") or {}
    of = f" / {max_steps}" if max_steps else ""
    table.add_row(f"{state['step']}{of}", _number(best), _number(last.get("loss")), _number(last.get("bpc")),
                  _number(last.get("accuracy")), f"{state.get('elapsed', 0.0):.1f} s")
    return table


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float | int) and math.isfinite(value) else "-"


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0", '"': '\\"', "\\": "\\\\"}


def setting_text(value) -> str:
    """A config value as YAML and --set spell it (true, 0.003, [a, b]); a string that would not show as it is
    (empty, a line break or other control character, a space at either end) in YAML's double quotes, escaped:
    separator="\\n", not a raw line break."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(setting_text(v) for v in value) + "]"
    if not isinstance(value, str) or (value and value == value.strip() and value.isprintable()):
        return str(value)
    return '"' + "".join(_ESCAPES.get(c) or (c if c.isprintable() else _code(c)) for c in value) + '"'


def _code(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
