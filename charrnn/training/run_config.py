"""The config and run folder that a `charrnn train` invocation means."""

from __future__ import annotations

import warnings
from pathlib import Path

from charrnn.config import Config, apply_overrides, config_from_dict, read_config_file, read_yaml, with_values
from charrnn.data.corpus import data_paths, resolve_data_paths
from charrnn.errors import UserError
from charrnn.paths import user_path
from charrnn.run.checkpoint import did_you_mean
from charrnn.run.folder import RunPaths
from charrnn.training import finetune
from charrnn.training.resume import unused_settings_note


def training_config(config: str | Path | dict | Config | None, overrides: list[str], *,
                    data: str | Path | list | None = None, name: str | None = None,
                    run_dir: str | Path | None = None, resume: bool = False, init_from: str | Path | None = None,
                    notes: list[str] | None = None) -> tuple[Config, Path | None]:
    """The config and run folder a `charrnn train` invocation means: the YAML file plus --data/--name/--set,
    or, on --resume, the run folder's own config.yaml plus the same overrides (e.g. a longer max_steps).
    With init_from (fine-tuning) the model section is the source's; a config that sets another is refused.
    Relative paths in the file are read as docs/paths.md says; those of the flags from the current folder.
    On --resume with a config file, the settings of the file that differ from the run's (and so are not used)
    are named in a note: appended to notes, or a warning when notes is None. config may also be the config's
    data itself (a dict, or a Config), as the Python API passes it."""
    if init_from is not None and resume:
        raise UserError("--init-from starts a new run from another run's weights; --resume continues this "
                        "run: pass one of them")
    if config is None and not (resume and (run_dir or name)):
        raise UserError("pass --config FILE (e.g. --config configs/ihello.yaml), or --resume with --run-dir")
    given = _flag_values(data, name, init_from)
    base = _config_data(config)
    run_dir = user_path(run_dir) if run_dir is not None else None
    if resume:
        from_file = with_values(apply_overrides(base, overrides), given)
        if run_dir is None:
            named = config_from_dict(from_file)
            run_dir = user_path(named.log.dir) / named.name
        saved = RunPaths(run_dir).config
        if not saved.is_file():
            raise UserError(f"cannot resume: {saved} does not exist; train without --resume first"
                            f"{did_you_mean(run_dir, 'runs')}")
        base = read_yaml(saved)
    raw = with_values(apply_overrides(base, overrides), given)
    if raw.get("init_from") and not resume:
        raw = finetune.take_source_model(raw)
    cfg = resolve_data_paths(config_from_dict(raw))
    if resume and config is not None:
        note = unused_settings_note(config_from_dict(from_file), cfg, config if isinstance(config, str | Path)
                                    else "the config given", run_dir)
        if note and notes is not None:
            notes.append(note)
        elif note:
            warnings.warn(note, stacklevel=2)
    return cfg, run_dir


def _flag_values(data: str | Path | list | None, name: str | None, init_from: str | Path | None) -> dict:
    """What --data, --name and --init-from set, as values (never YAML text: a file name with any character, an
    emoji included, reaches the config as typed). They are relative to the current folder."""
    given: dict = {}
    if init_from is not None:
        given["init_from"] = str(user_path(init_from))
    if name is not None:
        given["name"] = name
    if data is not None:  # a file or folder, or several
        given["data.path"] = [str(user_path(d)) for d in data] if isinstance(data, list | tuple) \
            else str(user_path(data))
    return given


def _config_data(config: str | Path | dict | Config | None) -> dict:
    """The raw config data of a YAML file (its relative paths read as docs/paths.md says), a dict or a Config
    (overrides then apply to it)."""
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, dict):
        return apply_overrides(config, [])  # a copy: the caller's dict is never changed
    if isinstance(config, str | Path):
        return read_config_file(config)
    raise UserError(f"config must be a YAML file's path, a dict or a charrnn Config, got {type(config).__name__}")


def run_inputs(cfg: Config) -> list[tuple[str, str]]:
    """(path, what it is) of what a new run reads: its corpus and the --init-from source. --overwrite refuses to
    clear a run folder that holds one of them."""
    inputs = [(path, "the corpus") for path in data_paths(cfg)]
    if cfg.init_from:
        inputs.append((cfg.init_from, "the --init-from source"))
    return inputs
