"""What a person at a terminal sees: a progress bar only on a terminal, plain lines otherwise, nothing
with --quiet; help with an example for every command; shell completion; `charrnn info`."""

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.training.loop import train

TEXT = "hello world\nhi there\n"
BAR_LINE = re.compile(r"^train\s+━")  # the Tracker's bar: "train ━━━━━━━━ 100% 20/20 loss ..."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONFIG = """\
name: term
data: {path: corpus.txt, val_fraction: 0.0}
model: {cell: gru, encoding: onehot, hidden_size: 8, num_layers: 1}
train: {seq_length: 6, batch_size: 1, max_steps: 20, eval_every: 10, checkpoint_every: 20, device: cpu}
log: {dir: runs, tensorboard: false, sample_every: 0}
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "c.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")}
    env.update(OMP_NUM_THREADS="1", TERM="xterm-256color", **extra)
    return env


def train_command(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", "train", "--config", "c.yaml", *args]


def run_in_pty(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run a command with stdin, stdout and stderr on a pseudo-terminal; return (exit code, all output)."""
    if not hasattr(os, "openpty"):
        pytest.skip("no pseudo-terminals on this platform")
    master, slave = os.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=child_env(COLUMNS="120"),
                            close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end of the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        else:
            pytest.fail(f"{args} did not finish within {timeout} s")
        return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)


def bar_lines(output: str) -> list[str]:
    """Every state the bar was drawn in, escape codes removed."""
    return [line for line in ANSI.sub("", output).replace("\r", "\n").splitlines() if BAR_LINE.match(line)]


def eval_lines(text: str) -> list[str]:
    return re.findall(r"step \d+: train loss [\d.]+\s+val loss ([\d.]+)", text)


def test_progress_bar_appears_on_a_terminal(workdir):
    code, out = run_in_pty(train_command(), workdir)
    assert code == 0, out
    assert "\x1b[" in out
    final_bar = bar_lines(out)[-1]
    assert "20/20" in final_bar and "100%" in final_bar and "chars/s" in final_bar and "ETA" in final_bar
    val_losses = eval_lines(ANSI.sub("", out))
    assert len(val_losses) == 2
    assert f"val {float(val_losses[-1]):.3f}" in final_bar  # the bar shows the latest eval, not the one before
    assert re.search(r"loss \d\.\d{3}", final_bar)


def test_the_bar_of_a_budget_with_a_step_limit_follows_whichever_ends_the_run(workdir):
    """A time budget with train.max_epochs far off (a large text under a config that caps the passes): the run
    ends with its budget, and the bar says 100% there, not the few percent of the step limit it reached."""
    code, out = run_in_pty(train_command("--set", "train.max_steps=null", "--set", "train.time_budget=2",
                                         "--set", "train.max_epochs=1000000", "--set", "train.eval_every=1000000"),
                           workdir)
    assert code == 0, out
    final_bar = bar_lines(out)[-1]
    assert "100%" in final_bar and "left" in final_bar and re.search(r"step \d+", final_bar), final_bar


def test_plain_lines_and_no_bar_when_output_is_not_a_terminal(workdir):
    proc = subprocess.run(train_command(), cwd=workdir, capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # progress and diagnostics go to stderr
    assert bar_lines(proc.stderr) == [] and "\x1b[" not in proc.stderr and "\r" not in proc.stderr
    assert len(eval_lines(proc.stderr)) == 2
    assert "sample it: charrnn sample runs/term" in proc.stderr


def test_quiet_prints_nothing_even_on_a_terminal(workdir):
    code, out = run_in_pty(train_command("--quiet"), workdir)
    assert code == 0, out
    assert out == ""
    assert (workdir / "runs" / "term" / "checkpoints" / "last.pt").is_file()


def test_time_budget_bar_counts_steps_and_time_left(workdir):
    args = train_command("--set", "train.max_steps=null", "--set", "train.time_budget=1",
                         "--set", "train.eval_every=100000")
    code, out = run_in_pty(args, workdir)
    assert code == 0, out
    final_bar = bar_lines(out)[-1]
    assert re.search(r"step \d+ ", final_bar) and " left " in final_bar and "100%" in final_bar


runner = CliRunner()


def test_help_shows_an_example_for_every_command_and_shell_completion():
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "Example: charrnn train" in res.output
    assert "--install-completion" in res.output and "--show-completion" in res.output
    for command in ("train", "sample", "eval", "info"):
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0
        assert f"Example: charrnn {command} " in res.output, command


def test_shell_completion_completes_commands_and_options():
    charrnn = Path(sys.executable).parent / "charrnn"
    if not charrnn.is_file():
        pytest.skip(f"no charrnn console script next to {sys.executable}")

    def complete(words: str) -> list[str]:
        env = child_env(_CHARRNN_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
        proc = subprocess.run([str(charrnn)], capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("charrnn tr") == ["train"]
    assert complete("charrnn train --ov") == ["--overwrite"]


def test_info_shows_config_vocabulary_parameters_and_progress(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, model={"encoding": "embedding", "embedding_dim": 4})
    result = train(cfg, quiet=True)
    res = runner.invoke(app, ["info", str(result.run_dir)], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    out = res.output
    for fragment in ("config", "cell=lstm", "encoding=embedding", "lr=0.02", "tie_weights=false",
                     "vocabulary (11 characters)", "\\n ␣ d e h i l o r t w",
                     "parameters", "embedding.weight", "[11, 4]", "rnn.weight_hh_l0", "[64, 16]", "total",
                     "progress", "20 / 20", f"{result.best_val_loss:.4f}", f"{result.val.bpc:.4f}"):
        assert fragment in out, fragment
    assert "max_epochs" not in out  # unset options are left out
