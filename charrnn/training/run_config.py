"""The config and run folder that a `charrnn train` invocation means."""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.config import Config, apply_overrides, config_from_dict, read_yaml
from charrnn.data.corpus import data_paths, resolve_data_paths
from charrnn.errors import UserError
from charrnn.run.folder import RunPaths
from charrnn.training import finetune


def training_config(config: str | Path | dict | Config | None, overrides: list[str], *,
                    data: str | Path | list | None = None, name: str | None = None,
                    run_dir: str | Path | None = None, resume: bool = False,
                    init_from: str | Path | None = None) -> tuple[Config, Path | None]:
    """The config and run folder a `charrnn train` invocation means: the YAML file plus --data/--name/--set,
    or, on --resume, the run folder's own config.yaml plus the same overrides (e.g. a longer max_steps).
    With init_from (fine-tuning) the model section is the source's; a config that sets another is refused.
    config may also be the config's data itself (a dict, or a Config), as the Python API passes it."""
    overrides = list(overrides)
    if init_from is not None:
        if resume:
            raise UserError("--init-from starts a new run from another run's weights; --resume continues this "
                            "run: pass one of them")
        overrides.append(f"init_from={json.dumps(str(init_from))}")
    if name is not None:
        overrides.append(f"name={json.dumps(name)}")
    if data is not None:  # a file or folder, or several
        paths = [str(d) for d in data] if isinstance(data, list | tuple) else str(data)
        overrides.append(f"data.path={json.dumps(paths)}")
    if config is None and not (resume and (run_dir or name)):
        raise UserError("pass --config FILE (e.g. --config configs/ihello.yaml), or --resume with --run-dir")
    base = _config_data(config)
    if resume:
        if run_dir is None:
            named = config_from_dict(apply_overrides(base, overrides))
            run_dir = Path(named.log.dir) / named.name
        saved = RunPaths(Path(run_dir)).config
        if not saved.is_file():
            raise UserError(f"cannot resume: {saved} does not exist; train without --resume first")
        base = read_yaml(saved)
    raw = apply_overrides(base, overrides)
    if raw.get("init_from") and not resume:
        raw = finetune.take_source_model(raw)
    cfg = config_from_dict(raw)
    return resolve_data_paths(cfg), Path(run_dir) if run_dir is not None else None


def _config_data(config: str | Path | dict | Config | None) -> dict:
    """The raw config data of a YAML file, a dict or a Config (overrides then apply to it)."""
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, dict):
        return apply_overrides(config, [])  # a copy: the caller's dict is never changed
    if isinstance(config, str | Path):
        return read_yaml(config)
    raise UserError(f"config must be a YAML file's path, a dict or a charrnn Config, got {type(config).__name__}")
def run_inputs(cfg: Config) -> list[tuple[str, str]]:
    """(path, what it is) of what a new run reads: its corpus and the --init-from source. --overwrite refuses to
    clear a run folder that holds one of them."""
    inputs = [(path, "the corpus") for path in data_paths(cfg)]
    if cfg.init_from:
        inputs.append((cfg.init_from, "the --init-from source"))
    return inputs
