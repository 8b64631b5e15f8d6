"""Run folders, atomic checkpoint writes and safe checkpoint loads.

A checkpoint is a dict of tensors and plain data written with torch.save and read back with
`torch.load(weights_only=True)`, which refuses anything that could run code. It carries a digest of all its
contents (every tensor's bytes, dtype and shape, and every other value), checked on every load: a changed or
lost byte is refused instead of loading other weights.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import pickle
import shutil
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import xxhash

from charrnn.errors import TrainingFailed, UserError
from charrnn.runlock import LOCK_NAME

FORMAT = "charrnn-checkpoint"
# 2 adds the digest. Version 1 files (written before it) are still read, unverified: refusing them would strand
# every run trained so far, and a damaged version 2 file cannot pass for one (the version is under the digest,
# and a version 2 file without a digest is refused).
VERSION = 2
READABLE_VERSIONS = (1, 2)
# XXH3-128 hashes at ~30 GB/s (sha256 ~1.7 GB/s with SHA-NI): about 1 ms for a 2x256 LSTM's checkpoint, whose
# save + load then take 1.05x as long (sha256: 1.8x; benchmarks/checkpoint_io.py). It guards against damage,
# not forgery: any unkeyed digest can be recomputed.
DIGEST = "xxh3_128"
_HASHERS: dict[str, Callable] = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}


class DamagedCheckpoint(UserError):
    """A checkpoint file whose bytes are not the ones charrnn wrote (truncated, flipped, incomplete)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        other = "last" if path.name == "best.pt" else "best"
        super().__init__(f"checkpoint {path} is damaged ({reason}); use another checkpoint "
                         f"(e.g. --checkpoint {other}) or retrain")


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


MARKER = ".charrnn-run"  # written into every run folder charrnn creates: {"tool": "charrnn", "version": ...}

# What charrnn writes into a run folder: a folder from before the marker is recognised by these names alone.
_LEGACY_REQUIRED = ("config.yaml", "vocab.json", "checkpoints", "metrics.jsonl")
# (and TensorBoard projector folders, named by step)
_RUN_ENTRIES = ("config.yaml", "vocab.json", "checkpoints", "metrics.jsonl", "events.out.tfevents.*",
                "projector_config.pbtxt", ".*.tmp-*", "status.json", LOCK_NAME, MARKER)
_CHECKPOINT_ENTRIES = ("*.pt", ".*.tmp-*")


def _marked(root: Path) -> bool:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("tool") == "charrnn"


def _foreign_entries(root: Path) -> list[str]:
    """Entries of a run folder that charrnn does not write (relative names)."""
    foreign = [p.name for p in root.iterdir()
               if not (any(fnmatch.fnmatchcase(p.name, pat) for pat in _RUN_ENTRIES) or p.name.isdigit())]
    checkpoints = root / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        foreign += [f"checkpoints/{p.name}" for p in checkpoints.iterdir()
                    if not any(fnmatch.fnmatchcase(p.name, pat) for pat in _CHECKPOINT_ENTRIES)]
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


def check_run_dir(root: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunPaths:
    """Every refusal of prepare_run_dir, with nothing written: training calls it before its slow set-up
    (encoding the corpus, probing the width), so that a folder it may not use is named at once."""
    paths = RunPaths(Path(root))
    if resume:
        if not paths.has_checkpoint():
            raise UserError(f"cannot resume: {paths.last} does not exist; train without --resume first")
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
            if started and not overwrite:
                raise UserError(
                    f"run folder {paths.root} already holds a run; pass --resume to continue it, "
                    "--overwrite to start again, or --name to pick another"
                )
            if overwrite:
                if paths.root.is_symlink():
                    raise UserError(f"--overwrite refused: {paths.root} is a symbolic link; "
                                    "pass the folder it points to, or another --run-dir")
                _check_writable(paths, replacing=True)
    return paths


def prepare_run_dir(root: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunPaths:
    """Check that a run folder may be used as asked (check_run_dir); create and mark it (not on resume).

    Training writes only into a new folder, an empty one or a charrnn run folder; --overwrite deletes
    only a charrnn run folder's contents (the folder stays, with the caller's lock file in it). Anything
    else is a UserError, and nothing is touched."""
    paths = check_run_dir(root, resume=resume, overwrite=overwrite)
    if resume:
        for debris in paths.checkpoints.glob(".*.tmp-*"):  # a write that was killed midway (see atomic_write)
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


def clear_run_dir(root: Path, *, best_effort: bool = False) -> None:
    """Delete everything in a run folder but the lock, which belongs to the process holding it (--overwrite;
    best_effort, for a failed new run taking back what it wrote, ignores what cannot be removed)."""
    for entry in root.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=best_effort)
        elif best_effort:
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


def state_digest(state: Any, algorithm: str | None = None) -> str:
    """'algorithm:hex' over everything in a checkpoint state: each tensor's dtype, shape and bytes (hashed
    in place, no copy on CPU) and every other value, key and container, in order."""
    algorithm = algorithm or DIGEST
    hasher = _HASHERS[algorithm]()
    _feed(hasher, state)
    return f"{algorithm}:{hasher.hexdigest()}"


def _feed(hasher: Any, value: Any) -> None:
    # Each value starts with a type tag and carries its length, so two different states never feed the same bytes.
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        header = f"{t.dtype}{tuple(t.shape)}".encode()
        hasher.update(b"T%d:" % len(header) + header)
        hasher.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())  # bf16, bool, ...: raw bytes alike
    elif isinstance(value, dict):
        hasher.update(b"D%d:" % len(value))
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, list | tuple):
        hasher.update(b"%s%d:" % (b"L" if isinstance(value, list) else b"U", len(value)))
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, bool) or value is None:
        hasher.update(b"B" + repr(value).encode())
    elif isinstance(value, int):
        hasher.update(b"I%d;" % value)
    elif isinstance(value, float):
        hasher.update(b"F" + struct.pack("<d", value))
    else:  # str, bytes, torch.dtype, torch.device, ...
        raw = value if isinstance(value, bytes) else f"{type(value).__name__}:{value}".encode("utf-8", "surrogatepass")
        hasher.update(b"S%d:" % len(raw) + raw)


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Save a checkpoint dict atomically, stamped with format, version and a digest of all of it; a failed write
    (say a full disk) is a TrainingFailed and leaves the previous file as it was."""
    stamped = {"format": FORMAT, "version": VERSION, **{k: v for k, v in state.items() if k != "digest"}}
    stamped["digest"] = state_digest(stamped)  # over everything else, a loaded state's old digest not included
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
        raise DamagedCheckpoint(path, f"truncated or not a checkpoint: {type(exc).__name__}") from None
    if isinstance(state, dict) and "digest" in state:  # checked first: a damaged file is named as such
        _verify_digest(state, path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a charrnn checkpoint")
    if state.get("version") not in READABLE_VERSIONS:
        raise UserError(f"checkpoint {path} has format version {state.get('version')!r}; this charrnn reads "
                        f"versions {', '.join(map(str, READABLE_VERSIONS))}: use the charrnn version that wrote it")
    if state["version"] >= 2 and "digest" not in state:
        raise DamagedCheckpoint(path, "its digest is missing")
    state.pop("digest", None)
    missing = [k for k in ("config", "vocab", "model", "step") if k not in state]
    if missing:
        raise DamagedCheckpoint(path, f"incomplete: missing {', '.join(missing)}")
    return state


def _verify_digest(state: dict, path: Path) -> None:
    claimed = state["digest"]
    algorithm = claimed.split(":", 1)[0] if isinstance(claimed, str) else None
    if algorithm not in _HASHERS:
        raise DamagedCheckpoint(path, f"unknown digest {str(claimed)[:40]!r}")
    try:
        actual = state_digest({k: v for k, v in state.items() if k != "digest"}, algorithm)
    except Exception as exc:  # a tensor that a flipped byte made unreadable
        raise DamagedCheckpoint(path, f"unreadable contents: {type(exc).__name__}") from None
    if actual != claimed:
        raise DamagedCheckpoint(path, "its contents do not match the digest written with it")


def load_resume_checkpoint(paths: RunPaths) -> dict:
    """last.pt for --resume; if it is damaged, the one-line error says which other checkpoint of the run is
    intact and how to resume from it."""
    try:
        return load_checkpoint(paths.last)
    except DamagedCheckpoint as exc:
        damaged = exc
    try:
        intact = load_checkpoint(paths.best) if paths.best.is_file() else None
    except UserError:
        intact = None
    if intact is None:
        raise UserError(f"cannot resume: {paths.last} is damaged ({damaged.reason}) and the run has no other "
                        "intact checkpoint; start again with --overwrite") from None
    raise UserError(f"cannot resume: {paths.last} is damaged ({damaged.reason}); {paths.best} (step "
                    f"{intact['step']}) is intact: to resume from there, copy it over last.pt "
                    f"(cp {paths.best} {paths.last}) and run --resume again") from None


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
