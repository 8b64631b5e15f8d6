"""A trained run's corpus as the read-only commands read it: the run remembers its text (per file: bytes and a
fingerprint) and eval, inspect, sample --novelty and --resume say when it changed; caches are written only in the
run's own cache (while it exists) or a folder the user names, and a cache that cannot be written costs a rebuild."""

from __future__ import annotations

import random
import shutil
import socket
from pathlib import Path

import pytest
from conftest import one_line_error, read_only, small_disk, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.data.cache import load_corpus
from charrnn.data.fingerprint import corpus_change, file_fingerprint
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training.loop import train

runner = CliRunner()

rng = random.Random(0)
TEXT = "abcd" * 1125 + "".join(rng.choice("abcd") for _ in range(500))  # the last 10%: random, hard to predict


@pytest.fixture
def run(tmp_path):
    cfg = tiny_config(tmp_path, TEXT, data={"val_fraction": 0.1},
                      train={"seq_length": 16, "batch_size": 4, "max_steps": 10, "eval_every": 10,
                             "checkpoint_every": 10})
    return train(cfg, quiet=True).run_dir, tmp_path / "corpus.txt"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_the_checkpoint_records_each_file_of_the_corpus(run):
    root, corpus = run
    recorded = load_checkpoint(root / "checkpoints" / "best.pt")["corpus"]
    assert recorded == {"chars": len(TEXT), "files": [{"path": str(corpus), "bytes": len(TEXT),
                                                       "xxh3": file_fingerprint(corpus)}]}


def test_eval_says_when_the_corpus_changed_and_what_val_means_then(run):
    """Issue 24, case 5: after the random tail was cut, eval scored 0.0007 over 449 characters, still titled
    'val split', with no word that this was other text than the run's val split."""
    root, corpus = run
    before = invoke("eval", root)
    assert before.exit_code == 0 and "warning" not in before.stderr
    corpus.write_text(TEXT[:4500], encoding="utf-8")
    res = invoke("eval", root)
    assert res.exit_code == 0, res.output
    warning = res.stderr.strip()
    assert warning.startswith("warning: the run's corpus changed since it was trained")
    assert f"{str(corpus)} holds other text (5,000 bytes then, 4,500 now)" in warning and "not comparable" in warning
    assert "changed since training" in res.stdout
    assert "changed since it was trained" in invoke("eval", root, "--json").stderr


def test_a_folder_that_gains_a_file_is_a_changed_corpus(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT, encoding="utf-8")
    (folder / "b.txt").write_text(TEXT[:100], encoding="utf-8")
    cfg = tiny_config(tmp_path, data={"path": str(folder), "val_fraction": 0.1},
                      train={"seq_length": 16, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2})
    root = train(cfg, quiet=True).run_dir
    (folder / "c.txt").write_text("dcba" * 50, encoding="utf-8")
    res = invoke("inspect", root, "--json", "--length", "20")
    assert res.exit_code == 0, res.output
    assert "1 file added" in res.stderr and str(folder / "c.txt") in res.stderr


def test_novelty_and_resume_say_the_corpus_changed(run):
    root, corpus = run
    corpus.write_text(TEXT[:4500] + "abcd", encoding="utf-8")
    res = invoke("sample", root, "--novelty", "--length", "5", "--seed", "0")
    assert res.exit_code == 0, res.output
    assert "corpus changed" in res.stderr and "Novelty is measured against the text as it is now" in res.stderr
    assert "warning" not in res.stdout  # stdout is the samples only
    res = invoke("train", "--resume", "--run-dir", root, "--set", "train.max_steps=12")
    assert res.exit_code == 0, res.output
    assert "the corpus changed since the checkpoint" in res.stderr and "not comparable" in res.stderr
    assert "warning" not in invoke("eval", root).stderr  # the new checkpoint records the text it trains on


def test_corpus_change_reads_old_checkpoints_as_unknown():
    assert corpus_change(None, {"chars": 3, "files": []}) is None
    same = {"chars": 3, "files": [{"path": "/a", "bytes": 3, "xxh3": "1"}]}
    assert corpus_change(same, same) is None
    gone = corpus_change(same, {"chars": 0, "files": []})
    assert "1 file gone (/a)" in gone


def test_a_moved_run_never_recreates_its_old_folders(run, tmp_path):
    """Issue 24, case 8: eval and --novelty wrote the cache at the absolute path recorded in the checkpoint, so
    a run moved elsewhere grew its old, deleted folder tree back."""
    root, _ = run
    moved = tmp_path / "elsewhere" / "ih"
    moved.parent.mkdir()
    shutil.move(root, moved)
    shutil.rmtree(tmp_path / "runs")  # its old folder, cache included
    for args in (["eval", moved], ["sample", moved, "--novelty", "--length", "3"], ["inspect", moved, "--json"]):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
        assert "does not exist (was the run moved?)" in res.stderr and "--cache DIR" in res.stderr
        assert not (tmp_path / "runs").exists()
    cache = tmp_path / "mine"
    assert invoke("eval", moved, "--cache", cache).exit_code == 0
    assert invoke("sample", moved, "--novelty", "--length", "3", "--cache", cache).exit_code == 0
    assert [p.name for p in cache.iterdir()][0].startswith("corpus.txt.")
    assert not (tmp_path / "runs").exists()


def test_a_read_only_cache_costs_a_rebuild_not_a_traceback(tmp_path):
    """Issue 24, case 11: sample --novelty on a read-only cache ended in EROFS from unlink inside an except block."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        cfg = tiny_config(tmp_path, TEXT, data={"val_fraction": 0.1, "cache": str(disk)},
                          train={"seq_length": 16, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2})
        root = train(cfg, quiet=True).run_dir
        read_only(disk)
        res = invoke("sample", root, "--novelty", "--length", "5", "--seed", "0")  # the index cannot be saved
        assert res.exit_code == 0 and "novelty:" in res.stdout, res.output
        (tmp_path / "corpus.txt").write_text(TEXT + "abcd", encoding="utf-8")  # a new entry is needed now
        for args in (["sample", root, "--novelty", "--length", "5"], ["eval", root]):
            res = invoke(*args)
            assert res.exit_code == 0, res.output
            assert "cannot be written (Read-only file system)" in res.stderr and "Traceback" not in res.output
        one_line_error(invoke("eval", root, "--cache", disk), f"--cache {disk}", "Read-only file system")


def test_a_killed_encodings_temporary_is_removed_by_the_next_run(tmp_path):
    """A kill during encoding left .ids.bin.tmp-<host>-<pid> in the cache for ever (gigabytes for a big corpus)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cache = tmp_path / "cache"
    entry = cache / "c.txt.0123456789abcdef"
    entry.mkdir(parents=True)
    leftover = entry / f".ids.bin.tmp-{socket.gethostname()}-{2**22 + 12345}"  # above any pid_max: never alive
    leftover.write_bytes(b"\0" * 1000)
    load_corpus(corpus, cache)
    assert not entry.exists()
    assert [p.name for p in Path(cache).iterdir()][0].startswith("c.txt.")
