"""Whatever is thrown at the command line, a user error ends in exit code 2 and one line on stderr:
no traceback, and no half-made run folder that gets in the way of the next run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import load_config
from charrnn.train import train

runner = CliRunner()


def test_exponent_numbers_are_numbers_in_yaml_and_set(tmp_path):
    """PyYAML reads 1e6 and 3e-4 as strings (YAML 1.1); charrnn reads them as numbers, as users mean."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1E-2\n", encoding="utf-8")
    cfg = load_config(path, ["train.grad_clip=5e0", "train.max_steps=2000"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.grad_clip) == (3e-4, 1e-2, 5.0)
    assert load_config(None, ["name=1e3x"]).name == "1e3x"


def one_line_error(res, *fragments: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("override", "fragments"), [
    ("model.hidden_size=32", ["model.hidden_size=32", "trained with 16"]),
    ("model.cell=gru", ["model.cell='gru'", "'lstm'"]),
    ("train.optimizer=sgd", ["train.optimizer='sgd'", "'adam'"]),
    ("train.batching=stateful", ["train.batching='stateful'", "'random'"]),
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
