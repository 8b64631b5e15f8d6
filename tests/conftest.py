"""Shared fixtures: tiny corpora and configs, so tests are small, fast and deterministic."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from charrnn.config import config_from_dict

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"  # the corpora that ship with charrnn

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and results stay deterministic


def one_line_error(res, *fragments: str, code: int = 2) -> str:
    """Assert that a CLI result is a user error as charrnn reports one: the exit code, one line on stderr
    containing every fragment, no traceback; return that line."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tiny_config(tmp_path: Path, text: str = "hihello", **sections) -> object:
    """A small validated Config whose corpus is `text`, logging under tmp_path/runs."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    raw = {
        "name": "tiny",
        "seed": 0,
        "data": {"path": str(corpus), "val_fraction": 0.0},
        "model": {"cell": "lstm", "encoding": "onehot", "hidden_size": 16, "num_layers": 1},
        "train": {"seq_length": min(6, len(text) - 1), "batch_size": 1, "max_steps": 20, "optimizer": "adam",
                  "lr": 0.02, "lr_schedule": "constant", "eval_every": 10, "checkpoint_every": 10,
                  "device": "cpu"},
        "log": {"dir": str(tmp_path / "runs"), "sample_every": 0, "tensorboard": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return config_from_dict(raw)


@pytest.fixture
def make_config(tmp_path):
    def factory(text: str = "hihello", **sections):
        return tiny_config(tmp_path, text, **sections)

    return factory


@contextlib.contextmanager
def small_disk(path: Path, size: str = "64k"):
    """A tmpfs of `size` mounted at path, for the tests of a full or read-only disk: filling a real disk is not
    an option, and nothing else makes write(2) fail with ENOSPC or EROFS the way a user's disk does. Mounting needs
    root; elsewhere the test is skipped. remount(path) makes it read-only."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (the only honest way to fill a disk or make it read-only)")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def read_only(path: Path) -> None:
    """Remount a small_disk read-only (root bypasses file permissions, so chmod would prove nothing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(path: Path) -> None:
    """Fill the disk that holds folder path, to the last byte."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 512):
                pass
    finally:
        os.close(fd)
