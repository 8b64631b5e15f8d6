"""The `charrnn` command line (a Typer app); each command is a module of its own."""

from charrnn.cli import (  # noqa: F401  (importing a command module registers its command)
    eval_command,
    export_command,
    info_command,
    inspect_command,
    sample_command,
    train_command,
)
from charrnn.cli.typer_app import app

__all__ = ["app"]
