"""Whatever is thrown at the command line, a user error ends in exit code 2 and one line on stderr:
no traceback, and no half-made run folder that gets in the way of the next run."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import string
import typing
from pathlib import Path

import pytest
import yaml
from conftest import REPO, one_line_error, tiny_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import Config, DataConfig, LogConfig, ModelConfig, TrainConfig, load_config
from charrnn.training.loop import train

runner = CliRunner()
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_exponent_numbers_are_numbers_in_yaml_and_set(tmp_path):
    """PyYAML reads 1e6 and 3e-4 as strings (YAML 1.1); charrnn reads them as numbers, as users mean."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1E-2\n", encoding="utf-8")
    cfg = load_config(path, ["train.grad_clip=5e0", "train.max_steps=2000"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.grad_clip) == (3e-4, 1e-2, 5.0)
    assert load_config(None, ["name=1e3x"]).name == "1e3x"


@pytest.mark.parametrize(("override", "fragments"), [
    ("model.hidden_size=32", ["model.hidden_size=32", "trained with 16"]),
    ("model.cell=gru", ["model.cell='gru'", "'lstm'"]),
    ("train.optimizer=sgd", ["train.optimizer='sgd'", "'adam'"]),
    ("train.batching=stateful", ["train.batching='stateful'", "'random'"]),
    ("train.seq_length=5", ["train.seq_length=5", "trained with 6"]),
    ("train.batch_size=2", ["train.batch_size=2", "trained with 1"]),
    ("data.val_fraction=0.2", ["data.val_fraction=0.2", "trained with 0.0"]),
])
def test_resume_refuses_settings_the_checkpoint_depends_on_and_writes_nothing(make_config, override, fragments):
    """Changing the model, optimizer or data order on --resume used to crash (RuntimeError, KeyError) after
    overwriting the run's config.yaml, which then broke every later resume."""
    cfg = make_config("hello world " * 10)
    run = train(cfg, quiet=True).run_dir
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "--set", override, "-q"])
    one_line_error(res, *fragments, "start a new run")
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "--set", "train.max_steps=24", "-q"])
    assert res.exit_code == 0, res.output


def test_resume_and_overwrite_together_are_refused_and_touch_nothing(make_config):
    run = train(make_config("hello world " * 10), quiet=True).run_dir
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    res = runner.invoke(app, ["train", "--resume", "--overwrite", "--run-dir", str(run), "-q"])
    one_line_error(res, "--resume and --overwrite contradict each other")
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "--bogus"], "No such option: --bogus"),
    (["train", "--config"], "'--config' requires an argument"),
    (["sample", "x", "--length", "abc"], "'--length'"),
    (["sample", "x", "--length", "-1"], "'--length'"),
    (["sample", "x", "--prime"], "'--prime' requires an argument"),
    (["sample"], "Missing argument"),
    (["bogus"], "No such command 'bogus'"),
    (["--bogus"], "No such option: --bogus"),
])
def test_bad_flags_are_one_line_too(args, fragment):
    """Click's usage errors used to print a usage line, a hint and a boxed panel: six lines."""
    one_line_error(runner.invoke(app, args), fragment)


# -- property tests: whatever is thrown at `charrnn train` and `charrnn sample` ---------------------------

class Workspace:
    """A scratch folder (also the working directory) with a good corpus and a good base config."""

    def __init__(self, root: Path):
        self.root, self.counter = root, itertools.count()
        self.corpus = root / "corpus.txt"
        self.corpus.write_text("hello world, hello charrnn. " * 4, encoding="utf-8")
        self.runs = root / "runs"
        self.base = {
            "name": "prop", "seed": 0,
            "data": {"path": str(self.corpus), "val_fraction": 0.0},
            "model": {"cell": "gru", "encoding": "onehot", "hidden_size": 16, "num_layers": 1},
            "train": {"seq_length": 6, "batch_size": 2, "max_steps": 2, "device": "cpu"},
            "log": {"dir": str(self.runs), "tensorboard": False, "sample_every": 0},
        }

    def file(self, suffix: str, content: str | bytes) -> Path:
        path = self.root / f"f{next(self.counter)}{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def train(self, config: Path, *args: str):
        return runner.invoke(app, ["train", "--config", str(config), "-q", *args])

    def assert_no_run_folder(self) -> None:
        runs = [p.name for d in (self.runs, self.root / "runs") if d.is_dir() for p in d.iterdir()]
        assert [name for name in runs if name != ".cache"] == []


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    before = os.getcwd()
    os.chdir(root)  # a config without log.dir would write runs/ here
    try:
        yield Workspace(root)
    finally:
        os.chdir(before)


_YAML_TRAPS = ["data: [1, 2\n", "model: {cell: lstm\n", "train:\n  lr: 0.1\n lr: 2\n", "\t- x\n", "a: b: c\n",
               "&a [*a, *b]", "!!python/object/apply:os.system [echo hi]\n", "? [a, b]\n: c\n", "%YAML 9.9\n---\n",
               "data: !!binary '#'\n", "- 1\n- 2\n", "42", "'just a string'", "[" * 60, "train: 5\n",
               "model:\n  - cell\n", "\ufeffname: x\n\x00", "{name: ok, data: {path: null}}"]


@PROPERTY
@given(text=st.one_of(st.text(max_size=120), st.tuples(st.sampled_from(_YAML_TRAPS), st.text(max_size=20))
                      .map("".join)))
@example(text="")
def test_malformed_yaml_configs_are_one_line_errors(ws, text):
    one_line_error(ws.train(ws.file(".yaml", text)))
    ws.assert_no_run_folder()


def _fields():
    """(dotted key, type, metadata) of every leaf in the config."""
    out = []
    top = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name in ("name", "seed"):
            out.append((f.name, top[f.name], dict(f.metadata)))
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig), ("log", LogConfig)):
        hints = typing.get_type_hints(cls)
        out.extend((f"{section}.{f.name}", hints[f.name], dict(f.metadata)) for f in dataclasses.fields(cls))
    return out


FIELDS = _fields()
_WORD = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10).filter(lambda w: w != "auto")


def _base_type(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _wrong_type(tp) -> st.SearchStrategy:
    base = _base_type(tp)
    lists = st.lists(st.integers(), max_size=2)
    if base is bool:
        return st.one_of(st.integers(), _WORD.filter(lambda w: w not in ("true", "false", "yes", "no", "on", "off")),
                         lists)
    if base is int:
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
                         _WORD, st.booleans(), lists)
    if base is float:
        return st.one_of(_WORD.filter(lambda w: w not in ("inf", "nan")), st.booleans(), lists,
                         st.dictionaries(_WORD, st.integers(), min_size=1, max_size=1))
    return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), lists)  # str


def _out_of_range(tp, meta) -> st.SearchStrategy | None:
    base, options = _base_type(tp), []
    if meta.get("choices"):
        options.append(_WORD.filter(lambda w: w not in meta["choices"]))
    step = st.integers(1, 10**6) if base is int else st.floats(1e-6, 1e6)
    if meta.get("lo") is not None:
        lo = base(meta["lo"])
        options.append(st.just(lo) if meta["lo_open"] else step.map(lambda d: lo - d))
    if meta.get("hi") is not None:
        hi = base(meta["hi"])
        options.append(st.just(hi) if meta["hi_open"] else step.map(lambda d: hi + d))
    return st.one_of(options) if options else None


@st.composite
def bad_settings(draw):
    """(dotted key, bad value, what kind of mistake) for one config key."""
    kind = draw(st.sampled_from(["type", "range", "unknown"]))
    if kind == "unknown":
        section = draw(st.sampled_from(["", "data.", "model.", "train.", "log."]))
        known = {key for key, _, _ in FIELDS} | {"data", "model", "train", "log"}
        key = draw(_WORD.map(lambda w: section + w).filter(lambda k: k not in known))
        return key, draw(st.integers()), kind
    if kind == "range":
        key, tp, meta = draw(st.sampled_from([f for f in FIELDS if _out_of_range(f[1], f[2]) is not None]))
        return key, draw(_out_of_range(tp, meta)), kind
    key, tp, meta = draw(st.sampled_from(FIELDS))
    return key, draw(_wrong_type(tp)), kind


@PROPERTY
@given(bad=bad_settings(), via_set=st.booleans())
def test_wrong_types_unknown_keys_and_out_of_range_values_name_the_key(ws, bad, via_set):
    key, value, kind = bad
    raw = json.loads(json.dumps(ws.base))
    if via_set:
        res = ws.train(ws.file(".yaml", yaml.safe_dump(raw)), "--set", f"{key}={json.dumps(value)}")
    else:
        node = raw
        *sections, leaf = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
        res = ws.train(ws.file(".yaml", yaml.safe_dump(raw)))
    line = one_line_error(res, f"'{key}'")
    if kind == "unknown":
        assert "unknown config key" in line and "allowed keys here" in line
    else:
        assert "must be" in line and repr(value) in line  # the key, what is allowed, and the bad value
    ws.assert_no_run_folder()


_NOT_UTF8 = st.binary(max_size=200).flatmap(lambda b: st.integers(0, len(b)).map(lambda i: b[:i] + b"\xff" + b[i:]))
_CORPORA = st.one_of(
    st.just(b""),
    _NOT_UTF8,  # 0xFF never occurs in UTF-8
    st.text(min_size=1, max_size=40).map(lambda t: t.encode("utf-16")),  # starts with a byte order mark FF FE
    st.text(min_size=1, max_size=40).map(lambda t: (t + "é").encode("utf-8")[:-1]),  # ends inside a character
    st.text(min_size=1, max_size=6).map(lambda t: t.encode("utf-8")),  # shorter than seq_length + 1
)


@PROPERTY
@given(corpus=_CORPORA)
@example(corpus=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
def test_binary_empty_and_too_short_corpora_are_one_line_errors(ws, corpus):
    config = ws.file(".yaml", yaml.safe_dump(ws.base))
    one_line_error(ws.train(config, "--data", str(ws.file(".txt", corpus))))
    ws.assert_no_run_folder()


def test_failed_attempts_leave_nothing_that_blocks_the_next_run(ws):
    config = ws.file(".yaml", yaml.safe_dump(ws.base))
    for args in (["--data", str(ws.file(".txt", b"\xff\xfe"))], ["--data", str(ws.file(".txt", b""))],
                 ["--data", str(ws.file(".txt", b"abc"))], ["--set", "train.lr=-1"], ["--set", "model.cell=tcn"],
                 ["--set", "data.path=/nonexistent/corpus.txt"], ["--data", "two\nlines.txt"], ["--device", "cuda:99"],
                 ["--set", f"log.dir={ws.corpus}/runs", "--set", f"data.cache={ws.root / 'cache'}"]):
        one_line_error(ws.train(config, *args))
    res = ws.train(config)
    assert res.exit_code == 0, res.output
    assert (ws.runs / "prop" / "checkpoints" / "last.pt").is_file()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    return train(tiny_config(tmp, "hello world", train={"max_steps": 3}), quiet=True).run_dir


_VOCAB = sorted(set("hello world"))


@PROPERTY
@given(prime=st.text(alphabet=st.one_of(st.sampled_from(_VOCAB), st.characters()), max_size=12))
@example(prime="")
@example(prime="\ud800")
@example(prime="-h")
@example(prime="hello\nworld")
@example(prime="--greedy")
def test_odd_prime_strings_sample_or_fail_in_one_line(sample_run, prime):
    res = runner.invoke(app, ["sample", str(sample_run), f"--prime={prime}", "--length", "3", "--seed", "0"])
    if prime and set(prime) <= set(_VOCAB):
        assert res.exit_code == 0, res.output
        assert res.stdout.startswith(prime) and len(res.stdout) == len(prime) + 3 + 1  # prime, 3 chars, newline
    else:
        line = one_line_error(res)
        assert ("vocabulary" in line) if prime else ("empty" in line)


@PROPERTY
@given(content=st.one_of(st.just(b""), _NOT_UTF8, st.text(min_size=1, max_size=8).map(str.encode)))
def test_prime_files_that_are_empty_binary_or_foreign_fail_in_one_line(ws, sample_run, content):
    prime_file = ws.file(".txt", content)
    res = runner.invoke(app, ["sample", str(sample_run), "--prime-file", str(prime_file), "--length", "2"])
    text = content.decode("utf-8", errors="replace")
    if content and "\ufffd" not in text and set(text) <= set(_VOCAB):
        assert res.exit_code == 0, res.output
    else:
        one_line_error(res)


def test_a_number_where_text_belongs_says_how_to_quote_it():
    args = ["train", "--set", "name=123", "--config", str(REPO / "configs" / "ihello.yaml")]
    one_line_error(runner.invoke(app, args),
                   "must be a string, got 123", "--set 'name=\"123\"'")


def test_held_out_fractions_that_leave_too_little_are_named(make_config, tmp_path):
    """val_fraction=0.999 was refused as 'too few for train.seq_length', without naming val_fraction."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(make_config("hello world, " * 5).to_dict()), encoding="utf-8")
    res = runner.invoke(app, ["train", "--config", str(cfg_file), "--set", "data.val_fraction=0.999", "-q"])
    one_line_error(res, "data.val_fraction=0.999", "leaving 0 to train on", "train.seq_length=6")
