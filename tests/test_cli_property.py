"""Property test over `charrnn sample`'s options and `charrnn train`'s --set values (issue 15): whatever is passed,
the command exits 0, 1 or 2, never with a traceback, says a user error in one line, and writes no file outside
the run folder and the corpus cache. The CLI runs in-process on a tiny run made once, so a case takes
milliseconds and each command gets 300 cases (new ones on each run: hypothesis draws afresh)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import Config, load_config
from charrnn.errors import UserError

runner = CliRunner()
CASES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORPUS = "hello world, hello charrnn. " * 4
BASE = {
    "name": "prop", "seed": 0,
    "data": {"path": "corpus.txt", "val_fraction": 0.0},
    "model": {"cell": "gru", "encoding": "onehot", "hidden_size": 4, "num_layers": 1},
    # One step, and a time budget besides: a drawn max_steps or time_budget alone cannot make a case long.
    "train": {"seq_length": 4, "batch_size": 2, "max_steps": 1, "time_budget": 5.0, "eval_every": 1,
              "checkpoint_every": 1, "device": "cpu"},
    "log": {"dir": "runs", "tensorboard": False, "sample_every": 0},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory holding a corpus, a base config and a tiny trained run (made once, for all cases; the
    working directory is restored when this module's tests end)."""
    root = tmp_path_factory.mktemp("property")
    before = os.getcwd()
    os.chdir(root)
    try:
        Path("corpus.txt").write_text(CORPUS, encoding="utf-8")
        Path("base.yaml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
        Path("empty.txt").write_bytes(b"")
        Path("binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
        Path("prime.txt").write_text("hello", encoding="utf-8")
        res = runner.invoke(app, ["train", "--config", "base.yaml", "--run-dir", "tiny", "-q",
                                  "--set", "train.max_steps=3"])
        assert res.exit_code == 0, res.output
        yield root
    finally:
        os.chdir(before)


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below root: relative path -> (size, modification time)."""
    out = {}
    for folder, folders, names in os.walk(root):
        folders[:] = [f for f in folders if f != ".hypothesis"]  # hypothesis's own example database
        for name in names:
            path = Path(folder, name)
            st_ = path.lstat()
            out[str(path.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


def check_outcome(res) -> None:
    """Exit 0, 1 or 2; no traceback (an exception escaping the CLI); a user error in one line."""
    escaped = res.exception is not None and not isinstance(res.exception, SystemExit)
    assert not escaped, f"{type(res.exception).__name__}: {res.exception}"
    assert res.exit_code in (0, 1, 2), (res.exit_code, res.output)
    assert "Traceback" not in res.output
    if res.exit_code in (1, 2):  # a refusal or a failure says why, in exactly one line
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr


def written_outside(before: dict, after: dict, allowed: list[Path]) -> list[str]:
    """Files created, changed or removed, other than under the allowed folders."""
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    roots = [a.resolve() for a in allowed]
    return sorted(p for p in changed if not any(Path(p).resolve().is_relative_to(r) for r in roots))


# -- sample --------------------------------------------------------------------------------------------------

_NUMBERS = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]))
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1e-40, 5e-324, 1e308, 1.0, 0.5, 1 + 1e-12]))
_TEXT = st.one_of(st.text(alphabet=st.sampled_from(sorted(set(CORPUS))), max_size=8), st.text(max_size=8))
_STOP = _TEXT  # backslashes included: a malformed escape ('\\', '\\x', '\\u12') must be one line, exit 2


def _option(draw, name: str, ordinary: st.SearchStrategy, odd: st.SearchStrategy) -> list[str]:
    """Half the time absent; else an ordinary value, or one time in ten an odd one (so most cases get as far as
    generating text, and the odd values meet each other rarely enough to each be reached)."""
    kind = draw(st.integers(0, 9))
    if kind < 5:
        return []
    return [f"{name}={draw(odd if kind == 9 else ordinary)}"]


@st.composite
def sample_args(draw) -> list[str]:
    run = draw(st.sampled_from(["tiny"] * 6 + ["tiny/checkpoints/last.pt", "corpus.txt", "missing", "."]))
    args = ["sample", run]
    if draw(st.booleans()):
        args += _option(draw, "--prime", _TEXT.filter(bool), st.text(max_size=8))
    else:
        args += _option(draw, "--prime-file", st.just("prime.txt"),
                        st.sampled_from(["empty.txt", "binary.bin", "missing.txt", "tiny", "corpus.txt"]))
    args += _option(draw, "--length", st.integers(0, 30), st.sampled_from(["-1", "x", "1e3", ""]))
    args += _option(draw, "--temperature", st.floats(0.05, 3), _FLOATS)
    args += _option(draw, "--top-k", st.integers(1, 12), _NUMBERS)
    args += _option(draw, "--top-p", st.floats(0.01, 1), _FLOATS)
    args += _option(draw, "--num-samples", st.integers(1, 4), st.sampled_from([0, -1, 10**12, 2**63, "two"]))
    args += _option(draw, "--stop", _STOP.filter(bool), _STOP)
    args += _option(draw, "--seed", st.integers(0, 2**63 - 1), _NUMBERS)
    args += _option(draw, "--checkpoint", st.sampled_from(["best", "last"]),
                    st.one_of(st.sampled_from(["corpus.txt", "tiny", "", "tiny/checkpoints/last.pt"]), _TEXT))
    args += _option(draw, "--device", st.sampled_from(["cpu", "auto"]),
                    st.one_of(st.sampled_from(["cuda", "cuda:7", "mps", "meta", "cpu:1"]), _TEXT))
    for flag in ("--greedy", "--json"):
        if draw(st.booleans()):
            args.append(flag)
    return args


@CASES
@given(args=sample_args())
def test_sample_takes_any_options_without_a_traceback_or_a_write(workspace, args):
    before = files_under(workspace)
    res = runner.invoke(app, args)
    check_outcome(res)
    assert written_outside(before, files_under(workspace), []) == []
    if res.exit_code == 0 and "--json" in args:
        json.loads(res.stdout)


# -- train --set ---------------------------------------------------------------------------------------------

def _fields() -> list[tuple[str, typing.Any, dict]]:
    """(dotted key, type, metadata) of every config leaf, and (section, None, {}) of every section."""
    out = []
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append((f.name, None, {}))
            sub_hints = typing.get_type_hints(tp)
            out.extend((f"{f.name}.{sub.name}", sub_hints[sub.name], dict(sub.metadata))
                       for sub in dataclasses.fields(tp))
        else:
            out.append((f.name, tp, dict(f.metadata)))
    return out


FIELDS = _fields()
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.\u0430\u0435\u00e9", min_size=1, max_size=10)


def _safe_path_text(text: str) -> str:
    # Drawn strings land in log.dir, data.cache and name too: keep them inside the working directory.
    return "./" + text.lstrip("/~") if text.startswith(("/", "~")) or ".." in text else text


_ODD = st.one_of(
    _NUMBERS, _FLOATS, st.booleans(), st.none(),
    st.text(max_size=12).map(_safe_path_text),
    st.sampled_from(["lstm", "gru", "rnn", "onehot", "embedding", "stateful", "sgd", "step", "bf16", "auto",
                     "corpus.txt", "runs", "cache", "base.yaml", "tiny", "x\0y", "tr\u0430in", ".cache"]),
    st.lists(st.integers(-2, 2), max_size=2),
    st.dictionaries(_WORD, st.integers(0, 3), max_size=2),
)


def _ordinary(tp: typing.Any, meta: dict) -> st.SearchStrategy:
    """A value of the key's own type, mostly in range: these cases train, with settings the base config lacks."""
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if meta.get("choices"):
        return st.sampled_from(meta["choices"])
    if base is bool:
        return st.booleans()
    if base is int:
        return st.integers(0, 6)
    if base is float:
        return st.floats(0, 1.5)
    return st.text(alphabet="abc_", min_size=1, max_size=6)


@st.composite
def set_args(draw) -> list[str]:
    """One or two --set overrides: a known key or a made-up one; the value ordinary, odd, or raw text."""
    args = []
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 5)) == 0:
            key, tp, meta = draw(_WORD), None, {}
        else:
            key, tp, meta = draw(st.sampled_from(FIELDS))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            text = _safe_path_text(draw(st.text(max_size=12)))
        else:
            value = draw(_ordinary(tp, meta) if kind >= 3 and tp is not None else _ODD)
            text = json.dumps(value) if isinstance(value, float) and not math.isfinite(value) else \
                yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()
        args += ["--set", f"{key}={text}"]
    return args


def _expected_folders(overrides: list[str]) -> list[Path]:
    """Where a run with these overrides may write: its run folder and its corpus cache (none if the config is bad)."""
    try:
        cfg = load_config("base.yaml", overrides)
    except UserError:
        return []
    log_dir = Path(cfg.log.dir)
    return [log_dir / cfg.name, Path(cfg.data.cache) if cfg.data.cache else log_dir / ".cache"]


@CASES
@given(args=set_args())
def test_train_takes_any_set_values_without_a_traceback_or_a_stray_write(workspace, args):
    overrides = args[1::2]
    # Two overrides could together make a long (valid) run: a long sample every step, or no stop in sight.
    assert_quick = {o.partition("=")[0] for o in overrides}
    if {"log.sample_every", "log.sample_length"} <= assert_quick or {"train.max_steps", "train.time_budget"} <= \
            assert_quick or {"train.max_epochs", "train.time_budget"} <= assert_quick:
        return
    before = files_under(workspace)
    allowed = _expected_folders(overrides)
    new_run = bool(allowed) and not allowed[0].exists()
    try:
        res = runner.invoke(app, ["train", "--config", "base.yaml", "-q", *args])
        check_outcome(res)
        assert written_outside(before, files_under(workspace), allowed) == []
    finally:
        torch.set_num_threads(1)  # a drawn train.threads changes it for the whole process
        if new_run and allowed[0].is_dir():
            shutil.rmtree(allowed[0])  # the next case starts without this run
