"""Checkpoint files: atomic writes and safe loads.

A checkpoint is a dict of tensors and plain data written with torch.save and read back with
`torch.load(weights_only=True)`, which refuses anything that could run code. It carries a digest of all its
contents (every tensor's bytes, dtype and shape, and every other value), checked on every load: a changed or
lost byte is refused instead of loading other weights."""

from __future__ import annotations

import hashlib
import pickle
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import xxhash

from charrnn.errors import TrainingFailed, UserError
from charrnn.paths import shown_path, user_path
from charrnn.run.folder import RunPaths
from charrnn.safe_files import atomic_write

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
        path = Path(path)
        other = path.with_name("best.pt" if path.name == "last.pt" else "last.pt")
        if path.is_file():
            then = "the previous one is intact: free some space, then continue with --resume"
        elif other.is_file():
            then = f"{other.name} is intact: free some space, then continue with --resume"
        else:
            then = "free some space and start again"
        raise TrainingFailed(f"could not write the checkpoint {path} ({exc.strerror or exc}); {then}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a charrnn checkpoint without executing code; every way it can be unusable is a UserError."""
    path = user_path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    what = _plainly_not_a_checkpoint(path)
    if what:
        raise UserError(f"{path} is {what}, not a checkpoint; {_pass_instead(path)}")
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
    """The checkpoint --resume continues from: last.pt, or best.pt when the run stopped before its first last.pt
    (its "resumed_from" key says which). If last.pt is damaged, the one-line error says which other checkpoint of
    the run is intact and how to resume from it."""
    source = paths.resume_source()
    if source is None:
        raise UserError(f"cannot resume: {paths.root} holds no checkpoint; train without --resume first")
    try:
        state = load_checkpoint(source)
    except DamagedCheckpoint as exc:
        if source == paths.best:
            raise UserError(f"cannot resume: {source} is damaged ({exc.reason}) and the run has no other "
                            "checkpoint; start again with --overwrite") from None
        damaged = exc
    else:
        state["resumed_from"] = str(source)
        return state
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


def resolve_checkpoint(run: str | Path, which: str = "best", runs_dir: str | Path = "runs") -> Path:
    """RUN (a run folder or a checkpoint file) and best|last|PATH -> the checkpoint file to load. A bare name
    that is neither, but names a run under runs_dir (log.dir), is suggested in the error."""
    run = user_path(run)
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
        custom = user_path(which)
        if custom.is_file():
            return custom
        raise UserError(f"--checkpoint {which!r}: use best, last or the path of a checkpoint file")
    suggestion = did_you_mean(run, runs_dir)
    raise UserError(f"{run} is neither a run folder nor a checkpoint file; "
                    + (suggestion or "pass a run folder, e.g. runs/ihello"))


def did_you_mean(given: str | Path, runs_dir: str | Path = "runs") -> str:
    """'did you mean runs/NAME?' when given is a relative path that does not exist but names a run (or a
    checkpoint file) below runs_dir; else ''."""
    given = Path(given)
    if given.is_absolute() or given.exists() or not given.parts:
        return ""
    candidate = user_path(runs_dir) / given
    if (candidate / "config.yaml").is_file() or RunPaths(candidate).best.is_file() or \
            RunPaths(candidate).has_checkpoint() or (candidate.suffix == ".pt" and candidate.is_file()):
        return f"did you mean {shown_path(candidate)}?"
    return ""


# What a run folder's own files are, for the error when one is passed where a checkpoint is expected.
_RUN_FILES = {"config.yaml": "the run's config", "vocab.json": "the run's vocabulary",
              "metrics.jsonl": "the run's metrics", "status.json": "the run's status",
              "inspect.html": "the page `charrnn inspect` wrote"}


def _plainly_not_a_checkpoint(path: Path) -> str | None:
    """What a file is when its first bytes show it is no checkpoint (torch writes a zip archive; older files
    start with a pickle): 'a YAML file (the run's config)', 'a JSON file', 'a text file', ...; else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None  # load_checkpoint names what it cannot read
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    if not head:
        return "an empty file"
    in_run = _run_folder_of(path) == path.parent
    role = (_RUN_FILES.get(path.name) if in_run else None) or \
        ("a TensorBoard event file" if "tfevents" in path.name else None)
    kind = _text_kind(path, head.decode("utf-8", "ignore") if _utf8(head) else None)
    return f"{kind} ({role})" if role and not role.startswith("a ") else role or kind


def _utf8(head: bytes) -> bool:
    """Whether the first bytes of a file are UTF-8 text (a character cut at the end of them aside)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _text_kind(path: Path, text: str | None) -> str:
    suffix = path.suffix.lower()
    if text is None:
        return "a file of another format"
    if suffix in (".yaml", ".yml"):
        return "a YAML file"
    if suffix in (".json", ".jsonl") or text.lstrip()[:1] in ("{", "["):
        return "a JSON file"
    if suffix in (".html", ".htm") or text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    return "a text file"


def _run_folder_of(path: Path) -> Path | None:
    """The run folder a file lies in (directly, or in its checkpoints/), if any."""
    for folder in (path.parent, path.parent.parent):
        paths = RunPaths(folder)
        if paths.config.is_file() and (paths.best.is_file() or paths.has_checkpoint()):
            return folder
    return None


def _pass_instead(path: Path) -> str:
    """What to pass instead of a file that is not a checkpoint: its run folder where it lies in one."""
    folder = _run_folder_of(path)
    if folder is not None:
        return f"pass the run folder ({shown_path(folder)}) or one of its checkpoints/*.pt"
    return "pass a run folder (e.g. runs/ihello) or a checkpoint file (e.g. runs/ihello/checkpoints/best.pt)"
