"""Run folders, atomic checkpoint writes and safe checkpoint loads.

A checkpoint is a dict of tensors and plain data written with torch.save and read back with
`torch.load(weights_only=True)`, which refuses anything that could run code.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charrnn.errors import TrainingFailed, UserError

FORMAT = "charrnn-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    """Where everything of one run lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def vocab(self) -> Path:
        return self.root / "vocab.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def has_checkpoint(self) -> bool:
        return self.last.is_file()


def prepare_run_dir(root: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunPaths:
    """Check that a run folder may be used as asked; create it (not on resume). Nothing is deleted
    except a previous charrnn run under --overwrite."""
    paths = RunPaths(Path(root))
    if resume:
        if not paths.has_checkpoint():
            raise UserError(f"cannot resume: {paths.last} does not exist; train without --resume first")
        _check_writable(paths, replacing=False)
        for debris in paths.checkpoints.glob(".*.tmp-*"):  # a write that was killed midway (see atomic_write)
            debris.unlink(missing_ok=True)
        return paths
    if paths.root.exists():
        if not paths.root.is_dir():
            raise UserError(f"run folder {paths.root} is a file; choose another --name or --run-dir")
        started = paths.has_checkpoint() or paths.metrics.exists()
        if started and not overwrite:
            raise UserError(
                f"run folder {paths.root} already holds a run; pass --resume to continue it, "
                "--overwrite to start again, or --name to pick another"
            )
        if overwrite and any(paths.root.iterdir()):
            if not (paths.config.exists() or paths.checkpoints.exists()):
                raise UserError(f"--overwrite refused: {paths.root} is not a charrnn run folder; choose another name")
            _check_writable(paths, replacing=True)
            shutil.rmtree(paths.root)
    try:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the run folder {paths.root} ({exc.strerror or exc}); "
                        "choose another log.dir, --name or --run-dir") from None
    return paths


def _check_writable(paths: RunPaths, *, replacing: bool) -> None:
    """Refuse up front a run folder that charrnn cannot write into (or, replacing it, delete): the write would
    fail later and name one of our temporary files, or a bare file name, instead of the folder."""
    if replacing:  # deleting an entry needs its folder writable; deleting the run folder, its parent
        needed = [paths.root.parent, paths.root, *(p for p in paths.root.rglob("*") if p.is_dir())]
    else:  # new files (atomic writes, event files) need the folders; metrics.jsonl is appended to in place
        needed = [paths.root, paths.checkpoints, paths.metrics]
    for path in needed:
        if path.exists() and not os.access(path, os.W_OK):
            which = "" if path == paths.root else f" ({path} is read-only)"
            raise UserError(f"run folder {paths.root} is not writable{which}; make it writable (chmod -R u+w) "
                            "or choose another --run-dir")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Any) -> None:
    """Write a file through a temporary file in the same folder, fsync it, then rename it into place:
    a crash or a full disk leaves the previous file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Save a checkpoint dict atomically, stamped with format and version; a failed write (say a full disk)
    is a TrainingFailed and leaves the previous file as it was."""
    stamped = {"format": FORMAT, "version": VERSION, **state}
    try:
        atomic_write(path, lambda f: torch.save(stamped, f))
    except OSError as exc:
        then = ("the previous one is intact: free some space, then continue with --resume" if Path(path).is_file()
                else "free some space and start again")
        raise TrainingFailed(f"could not write the checkpoint {path} ({exc.strerror or exc}); {then}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a charrnn checkpoint without executing code; every way it can be unusable is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. 'Detected pickle protocol 92' from a file that is no checkpoint
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).split("\n")[0][:160] if "weights_only" not in str(exc) else "it holds pickled objects"
        raise UserError(
            f"refused to load {path}: it is not a plain-tensor charrnn checkpoint ({reason}); "
            "only load checkpoints written by charrnn"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # a damaged file fails in many ways: RuntimeError, EOFError, IndexError, struct.error...
        raise UserError(f"checkpoint {path} is truncated or not a checkpoint ({type(exc).__name__}); "
                        "use another checkpoint (e.g. --checkpoint last) or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a charrnn checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {path} has format version {state.get('version')!r}; this charrnn reads "
                        f"version {VERSION}: use the charrnn version that wrote it")
    missing = [k for k in ("config", "vocab", "model", "step") if k not in state]
    if missing:
        raise UserError(f"checkpoint {path} is incomplete (missing {', '.join(missing)})")
    return state


def resolve_checkpoint(run: str | Path, which: str = "best") -> Path:
    """RUN (a run folder or a checkpoint file) and best|last|PATH -> the checkpoint file to load."""
    run = Path(run)
    if run.is_file():
        return run
    if run.is_dir():
        paths = RunPaths(run)
        if which in ("best", "last"):
            chosen = paths.best if which == "best" else paths.last
            if not chosen.is_file() and which == "best" and paths.last.is_file():
                chosen = paths.last
            if chosen.is_file():
                return chosen
            raise UserError(f"{run} has no {which} checkpoint (looked for {chosen}); has it been trained?")
        custom = Path(which)
        if custom.is_file():
            return custom
        raise UserError(f"--checkpoint {which!r}: use best, last or the path of a checkpoint file")
    raise UserError(f"{run} is neither a run folder nor a checkpoint file; pass e.g. runs/ihello")
