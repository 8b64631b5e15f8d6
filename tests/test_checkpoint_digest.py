"""Checkpoints prove their bytes: a digest of everything in them is written with them and checked on every
load, so a flipped or lost byte is refused with one line (exit 2) instead of loading other weights."""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_checkpoint import one_line_error
from typer.testing import CliRunner

import charrnn.run.checkpoint as checkpoint_module
from charrnn.cli import app
from charrnn.errors import UserError
from charrnn.run.checkpoint import (
    DamagedCheckpoint,
    load_checkpoint,
    load_resume_checkpoint,
    save_checkpoint,
    state_digest,
)
from charrnn.run.folder import RunPaths
from charrnn.training.loop import train

runner = CliRunner()
FLIPS, TRUNCATIONS, CLI_CASES = 200, 50, 10


def same_bits(a, b) -> bool:
    """Equal down to the bit: same types, same keys in the same order, tensors of the same dtype, shape and bytes."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.contiguous().reshape(-1).view(torch.uint8),
                                b.contiguous().reshape(-1).view(torch.uint8)))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_bits(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


# -- the digest itself ----------------------------------------------------------------------------------------

def _state() -> dict:
    return {"step": 3, "best_val": 1.25, "window": (0.5, 2), "vocab": ["a", "b"], "flags": [True, None],
            "model": {"w": torch.arange(6.0).reshape(2, 3), "half": torch.ones(2, dtype=torch.bfloat16)},
            "rng": torch.arange(4, dtype=torch.uint8)}


@pytest.mark.parametrize("change", [
    lambda s: s["model"]["w"].view(-1)[4].add_(1e-6),           # one weight, a little
    lambda s: s["model"]["half"].view(torch.int16)[0].add_(1),  # one bf16 bit pattern
    lambda s: s["model"].__setitem__("w", s["model"]["w"].reshape(3, 2)),  # same bytes, other shape
    lambda s: s["model"].__setitem__("w", s["model"]["w"].view(torch.int32)),  # same bytes, other dtype
    lambda s: s.__setitem__("best_val", 1.2500000000000002),
    lambda s: s.__setitem__("window", [0.5, 2]),                # a list is not the tuple it was
    lambda s: s.__setitem__("step", 4),
    lambda s: s["vocab"].__setitem__(1, "c"),
    lambda s: s["flags"].__setitem__(0, 1),                     # True and 1 differ
    lambda s: s.__setitem__("step", s.pop("step")),             # same keys, other order
])
def test_the_digest_changes_with_any_value(change):
    state = _state()
    before = state_digest(state)
    change(state)
    assert state_digest(state) != before


def test_tensors_of_every_kind_round_trip(tmp_path):
    """bf16, bool, 0-dim, empty and non-contiguous tensors are hashed as saved and verify on load."""
    state = {"config": {}, "vocab": ["a"], "step": 0, "model": {
        "bf16": torch.randn(3, 4).to(torch.bfloat16), "bool": torch.tensor([True, False]), "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3), "transposed": torch.randn(3, 5).t(), "int64": torch.arange(5)}}
    path = tmp_path / "c.pt"
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert "digest" not in loaded
    assert same_bits(loaded["model"], state["model"])


def test_a_rewritten_weight_is_refused_naming_the_file(tmp_path):
    """The file is well formed and only one weight differs from what was saved: refused, with the file named."""
    path = tmp_path / "c.pt"
    save_checkpoint({"config": {}, "vocab": ["a"], "step": 1, "model": {"w": torch.zeros(4)}}, path)
    raw = torch.load(path, weights_only=True)
    raw["model"]["w"][2] = 1e-30
    torch.save(raw, path)
    with pytest.raises(DamagedCheckpoint, match=f"checkpoint {path} is damaged .*do not match the digest"):
        load_checkpoint(path)


def test_a_sha256_digest_is_verified_too(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "DIGEST", "sha256")
    path = tmp_path / "c.pt"
    save_checkpoint({"config": {}, "vocab": ["a"], "step": 1, "model": {"w": torch.ones(3)}}, path)
    assert torch.load(path, weights_only=True)["digest"].startswith("sha256:")
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_version_1_checkpoints_load_unverified_but_version_2_needs_its_digest(tmp_path):
    """Runs trained before the digest stay usable; a current file that lost its digest is refused."""
    body = {"format": "charrnn-checkpoint", "config": {}, "vocab": ["a"], "step": 1, "model": {"w": torch.ones(2)}}
    old, stripped = tmp_path / "old.pt", tmp_path / "stripped.pt"
    torch.save({**body, "version": 1}, old)
    torch.save({**body, "version": 2}, stripped)
    assert load_checkpoint(old)["step"] == 1
    with pytest.raises(DamagedCheckpoint, match="digest is missing"):
        load_checkpoint(stripped)


# -- a real last.pt, damaged at random -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A tiny real training run with last.pt (step 4) and best.pt, made once."""
    tmp = tmp_path_factory.mktemp("real")
    cfg = tiny_config(tmp, "hello world, hello charrnn. " * 6, data={"val_fraction": 0.2},
                      train={"max_steps": 4, "checkpoint_every": 2, "eval_every": 2})
    return train(cfg, quiet=True).run_dir


def damaged_copies(blob: bytes) -> list[tuple[str, bytes]]:
    """200 single-byte flips (XOR with a random non-zero byte) and 50 truncations, at seeded random places."""
    rng = random.Random(13)
    cases = []
    for _ in range(FLIPS):
        at = rng.randrange(len(blob))
        cases.append((f"flip@{at}", blob[:at] + bytes([blob[at] ^ rng.randrange(1, 256)]) + blob[at + 1:]))
    for _ in range(TRUNCATIONS):
        size = rng.randrange(len(blob))
        cases.append((f"truncated@{size}", blob[:size]))
    return cases


@pytest.fixture(scope="module")
def verdicts(real_run, tmp_path_factory) -> list[tuple[str, bytes, bool]]:
    """Each damaged copy of last.pt, and whether load_checkpoint refused it (else it loaded bitwise equal)."""
    last = RunPaths(real_run).last
    original = load_checkpoint(last)
    path = tmp_path_factory.mktemp("damaged") / "last.pt"
    out, different = [], []
    for name, blob in damaged_copies(last.read_bytes()):
        path.write_bytes(blob)
        try:
            state = load_checkpoint(path)
        except UserError:
            out.append((name, blob, True))
            continue
        if not same_bits(state, original):
            different.append(name)
        out.append((name, blob, False))
    assert not different, f"loaded other weights without a word: {different}"
    return out


def test_every_damaged_copy_is_refused_or_loads_bitwise_equal(verdicts):
    refused = [name for name, _, was_refused in verdicts if was_refused]
    assert all(was_refused for name, _, was_refused in verdicts if name.startswith("truncated"))
    assert len(refused) >= 0.8 * FLIPS  # nearly every byte of the file is tensor data under the digest


def _cli_sample(verdicts, seed: int) -> list[tuple[str, bytes, bool]]:
    """CLI_CASES cases: every flip that loaded (the rarer verdict) that fits, then refused ones at random."""
    rng = random.Random(seed)
    loaded = [v for v in verdicts if not v[2]]
    refused = [v for v in verdicts if v[2]]
    chosen = rng.sample(loaded, min(len(loaded), CLI_CASES // 3))
    return chosen + rng.sample(refused, CLI_CASES - len(chosen))


@pytest.mark.parametrize("command", ["sample", "eval", "info", "resume"])
def test_the_cli_refuses_a_damaged_checkpoint_in_one_line(real_run, verdicts, tmp_path, command):
    for i, (name, blob, was_refused) in enumerate(_cli_sample(verdicts, seed=len(command))):
        run = tmp_path / f"run{i}"
        shutil.copytree(real_run, run)
        last = RunPaths(run).last
        last.write_bytes(blob)
        args = {"sample": ["sample", str(last), "--length", "5", "--seed", "0"],
                "eval": ["eval", str(last), "--split", "val"],
                "info": ["info", str(last)],
                "resume": ["train", "--resume", "--run-dir", str(run), "-q"]}[command]
        res = runner.invoke(app, args)
        if was_refused:
            line = one_line_error(res)
            assert str(last) in line or "refused to load" in line, (name, line)
        else:
            assert res.exit_code == 0, (name, res.output)


def test_resume_from_a_damaged_last_pt_names_the_intact_best_pt(real_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    paths = RunPaths(run)
    blob = bytearray(paths.last.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # deep in the tensor data
    paths.last.write_bytes(bytes(blob))
    best_step = load_checkpoint(paths.best)["step"]
    line = one_line_error(runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "-q"]))
    assert f"cannot resume: {paths.last} is damaged" in line
    assert f"{paths.best} (step {best_step}) is intact" in line and f"cp {paths.best} {paths.last}" in line

    paths.best.write_bytes(paths.best.read_bytes()[:100])
    with pytest.raises(UserError, match="no other intact checkpoint; start again with --overwrite"):
        load_resume_checkpoint(paths)
