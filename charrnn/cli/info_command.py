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
                settings.append(f"{key}=", style="dim").append(setting_text(value)).append("  ")
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
