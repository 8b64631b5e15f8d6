"""Run folders: where a run's files live (RunPaths), whether a folder is charrnn's (its marker), and the
checks and writes that create, reuse or clear one."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.errors import UserError
from charrnn.run.lock import LOCK_NAME
from charrnn.safe_files import RUN_MARKER, atomic_write, remove_stale_temporaries, written_by_charrnn


@dataclass(frozen=True)
class RunPaths:
    """Where everything of one run lives: root / config.yaml, vocab.json, metrics.jsonl, checkpoints/{last,best}.pt."""

    root: Path
    config: Path = field(init=False)
    vocab: Path = field(init=False)
    metrics: Path = field(init=False)
    checkpoints: Path = field(init=False)
    last: Path = field(init=False)
    best: Path = field(init=False)

    def __post_init__(self) -> None:
        layout = {"config": "config.yaml", "vocab": "vocab.json", "metrics": "metrics.jsonl",
                  "checkpoints": "checkpoints", "last": "checkpoints/last.pt", "best": "checkpoints/best.pt"}
        for name, relative in layout.items():
            object.__setattr__(self, name, Path(self.root) / relative)

    def has_checkpoint(self) -> bool:
        """Whether the run holds a model (last.pt or best.pt): --resume continues it, a plain train refuses it."""
        return self.resume_source() is not None

    def resume_source(self) -> Path | None:
        """The checkpoint --resume continues from: last.pt, or best.pt when the run stopped before its first
        last.pt (killed between its first evaluation and its first checkpoint, or a full disk then)."""
        return next((p for p in (self.last, self.best) if p.is_file()), None)


MARKER = RUN_MARKER  # written into every run folder charrnn creates: {"tool": "charrnn", "version": ...}


# What charrnn writes into a run folder: a folder from before the marker is recognised by these names alone.
_LEGACY_REQUIRED = ("config.yaml", "vocab.json", "checkpoints", "metrics.jsonl")


# Every name charrnn writes into a run folder (and TensorBoard projector folders, named by a step of 5 digits or
# more): --overwrite deletes these, and nothing else (the marker last).
_RUN_ENTRIES = ("config.yaml", "vocab.json", "checkpoints", "metrics.jsonl", "events.out.tfevents.*",
                "projector_config.pbtxt", ".*.tmp-*", "status.json", LOCK_NAME, MARKER)


_CHECKPOINT_ENTRIES = ("*.pt", ".*.tmp-*")


def _charrnn_entry(path: Path, patterns: tuple[str, ...] = _RUN_ENTRIES) -> bool:
    """Whether charrnn wrote this entry of a run folder (by name; a page of `inspect` by its stamp)."""
    name = path.name
    if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
        return True
    if patterns is _RUN_ENTRIES and name.isdigit() and len(name) >= 5:
        return True
    return path.is_file() and not path.is_symlink() and written_by_charrnn(path)


def _marked(root: Path) -> bool:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("tool") == "charrnn"


def _foreign_entries(root: Path) -> list[str]:
    """Entries of a run folder that charrnn does not write (relative names)."""
    foreign = [p.name for p in root.iterdir() if not _charrnn_entry(p)]
    checkpoints = root / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        foreign += [f"checkpoints/{p.name}" for p in checkpoints.iterdir()
                    if not _charrnn_entry(p, _CHECKPOINT_ENTRIES)]
    elif checkpoints.exists():
        foreign.append("checkpoints")
    return sorted(foreign)


def is_run_dir(root: str | Path) -> bool:
    """Whether charrnn made this folder: it holds charrnn's marker file, or (a run from before the marker)
    config.yaml, vocab.json, checkpoints/ and metrics.jsonl and nothing that charrnn does not write."""
    root = Path(root)
    if not root.is_dir():
        return False
    if _marked(root):
        return True
    return all((root / name).exists() for name in _LEGACY_REQUIRED) and not _foreign_entries(root)


def mark_run_dir(root: str | Path) -> None:
    """Write the marker that makes a folder recognisable as a charrnn run (and so replaceable by --overwrite)."""
    from charrnn import __version__

    text = json.dumps({"tool": "charrnn", "version": __version__}) + "\n"
    atomic_write(Path(root) / MARKER, lambda f: f.write(text.encode("utf-8")))


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_run_dir(root: str | Path, *, resume: bool = False, overwrite: bool = False,
                  keep: Sequence[tuple[str | Path | None, str]] = ()) -> RunPaths:
    """Every refusal of prepare_run_dir, with nothing written: training calls it before its slow set-up
    (encoding the corpus, probing the width), so that a folder it may not use is named at once. keep: (path,
    what it is) of the run's inputs (corpus, --init-from source), which --overwrite refuses to clear."""
    paths = RunPaths(Path(root))
    if resume:
        if not paths.has_checkpoint():
            raise UserError(f"cannot resume: {paths.root} holds no checkpoint ({paths.last} does not exist); "
                            "train without --resume first")
        _check_writable(paths, replacing=False)
        return paths
    if paths.root.exists() or paths.root.is_symlink():
        if not paths.root.is_dir():
            raise UserError(f"run folder {paths.root} is a file; choose another --name or --run-dir")
        try:
            entries = sorted(p.name for p in paths.root.iterdir() if p.name != LOCK_NAME)  # the caller's lock
        except OSError as exc:
            raise UserError(f"cannot read the run folder {paths.root} ({exc.strerror or exc}); "
                            "choose another --name or --run-dir") from None
        if entries:
            if not is_run_dir(paths.root):
                foreign = _foreign_entries(paths.root) or entries
                raise UserError(f"{paths.root} is not an empty folder or a charrnn run folder (it holds "
                                f"{_listing(foreign)}); charrnn writes a run only into a new folder, an empty one "
                                "or a run folder it made: choose another --name or --run-dir")
            started = paths.has_checkpoint() or paths.metrics.exists()
            if started and not overwrite and not paths.has_checkpoint():
                raise UserError(f"run folder {paths.root} holds a run that stopped before its first checkpoint (it "
                                "has no model to resume); pass --overwrite to start it again, or --name to pick "
                                "another")
            if started and not overwrite:
                raise UserError(
                    f"run folder {paths.root} already holds a run; pass --resume to continue it, "
                    "--overwrite to start again, or --name to pick another"
                )
            if overwrite:
                _check_clearable(paths, keep)
    return paths


def _check_clearable(paths: RunPaths, keep: Sequence[tuple[str | Path | None, str]]) -> None:
    """Refuse --overwrite of a folder that is a link, cannot be cleared, or holds what the new run reads."""
    if paths.root.is_symlink():
        raise UserError(f"--overwrite refused: {paths.root} is a symbolic link; "
                        "pass the folder it points to, or another --run-dir")
    root = paths.root.resolve()
    for path, what in keep:
        if path is not None and Path(path).expanduser().resolve().is_relative_to(root):
            raise UserError(f"--overwrite refused: {what} {path} lies inside the run folder {paths.root}, which "
                            "--overwrite clears; move it out of the folder first, or train under another --name")
    _check_writable(paths, replacing=True)


def prepare_run_dir(root: str | Path, *, resume: bool = False, overwrite: bool = False,
                    keep: Sequence[tuple[str | Path | None, str]] = ()) -> RunPaths:
    """Check that a run folder may be used as asked (check_run_dir); create and mark it (not on resume).

    Training writes only into a new folder, an empty one or a charrnn run folder; --overwrite deletes
    only what charrnn wrote in a run folder (the folder stays, with the caller's lock file and the user's own
    files in it). Anything else is a UserError, and nothing is touched."""
    paths = check_run_dir(root, resume=resume, overwrite=overwrite, keep=keep)
    remove_stale_temporaries(paths.root)  # a write killed midway (see atomic_write)
    if resume:
        for debris in paths.checkpoints.glob(".*.tmp-*"):  # we hold the lock: no live process writes here
            debris.unlink(missing_ok=True)
        return paths
    if overwrite and paths.root.is_dir():  # checked: empty but for the lock, or a charrnn run folder
        clear_run_dir(paths.root)
    try:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        if not _marked(paths.root):
            mark_run_dir(paths.root)
    except OSError as exc:
        raise UserError(f"cannot create the run folder {paths.root} ({exc.strerror or exc}); "
                        "choose another log.dir, --name or --run-dir") from None
    return paths


def clear_run_dir(root: Path, *, best_effort: bool = False) -> list[str]:
    """Delete what charrnn wrote in a run folder (by name, see _RUN_ENTRIES) and nothing else; returns the names
    of the entries it kept. The lock stays (it belongs to the process holding it), and the marker goes last, so
    a clear cut short leaves a folder that --overwrite still recognises. best_effort (a failed new run taking back
    what it wrote) ignores what cannot be removed."""
    if not _marked(root) and is_run_dir(root):
        mark_run_dir(root)  # a folder from before the marker is recognised by its names: keep it recognisable
    kept = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name == MARKER):
        if entry.name == LOCK_NAME:
            continue
        if entry.name == "checkpoints" and entry.is_dir() and not entry.is_symlink():
            kept += [f"checkpoints/{p.name}" for p in entry.iterdir() if not _charrnn_entry(p, _CHECKPOINT_ENTRIES)]
            for p in entry.iterdir():
                if _charrnn_entry(p, _CHECKPOINT_ENTRIES):
                    _remove(p, best_effort)
            if not any(entry.iterdir()):
                _remove(entry, best_effort)
        elif _charrnn_entry(entry):
            _remove(entry, best_effort)
        else:
            kept.append(entry.name)
    return kept


def _remove(entry: Path, best_effort: bool) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=best_effort)
    elif best_effort:
        with contextlib.suppress(OSError):
            entry.unlink(missing_ok=True)
    else:
        entry.unlink()


def _check_writable(paths: RunPaths, *, replacing: bool) -> None:
    """Refuse up front a run folder that charrnn cannot write into (or, replacing it, delete): the write would
    fail later and name one of our temporary files, or a bare file name, instead of the folder."""
    if replacing:  # deleting an entry needs its folder writable (the run folder itself stays, with its lock)
        needed = [paths.root, *(p for p in paths.root.rglob("*") if p.is_dir())]
    else:  # new files (atomic writes, event files) need the folders; metrics.jsonl is appended to in place
        needed = [paths.root, paths.checkpoints, paths.metrics]
    for path in needed:
        if path.exists() and not os.access(path, os.W_OK):
            which = "" if path == paths.root else f" ({path} is read-only)"
            raise UserError(f"run folder {paths.root} is not writable{which}; make it writable (chmod -R u+w) "
                            "or choose another --run-dir")
