"""Training writes only into a new folder, an empty one or a run folder charrnn made, and --overwrite deletes
only a run folder charrnn made: a user's own folder is refused with one line, exit 2, and left byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import save_config
from charrnn.errors import UserError
from charrnn.run.checkpoint import load_checkpoint
from charrnn.run.folder import MARKER, is_run_dir, prepare_run_dir
from charrnn.training.loop import train

runner = CliRunner()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under root, with the bytes of each file."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def project(tmp_path) -> Path:
    """A user's project folder that happens to hold a config.yaml and a checkpoints/ folder."""
    root = tmp_path / "project"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "model.ckpt").write_bytes(b"\x00weights of another tool")
    (root / "config.yaml").write_text("my: own config\n", encoding="utf-8")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hello')\n", encoding="utf-8")
    (root / "README.md").write_text("# my project\n", encoding="utf-8")
    return root


def cli_train(cfg, tmp_path: Path, run_dir: Path, *flags: str):
    cfg_file = tmp_path / "c.yaml"
    save_config(cfg, cfg_file)
    return runner.invoke(app, ["train", "--config", str(cfg_file), "--run-dir", str(run_dir), "-q", *flags])


@pytest.mark.parametrize("flags", [["--overwrite"], []])
def test_a_folder_charrnn_did_not_make_survives_byte_for_byte(make_config, tmp_path, project, flags):
    """--overwrite used to rmtree any folder with a config.yaml or a checkpoints/ folder; without it, training
    silently replaced the user's config.yaml."""
    before = snapshot(project)
    line = one_line_error(cli_train(make_config(), tmp_path, project, *flags))
    assert str(project) in line and "not an empty folder or a charrnn run folder" in line
    assert "README.md" in line  # it names what it found
    assert snapshot(project) == before


def test_run_dir_dot_inside_a_project_is_refused(make_config, tmp_path, project, monkeypatch):
    monkeypatch.chdir(project)
    before = snapshot(project)
    one_line_error(cli_train(make_config(), tmp_path, Path("."), "--overwrite"))
    assert snapshot(project) == before


def test_a_real_run_folder_is_still_overwritten(make_config, tmp_path):
    run = tmp_path / "run"
    assert cli_train(make_config(train={"max_steps": 10}), tmp_path, run).exit_code == 0
    marker = json.loads((run / MARKER).read_text(encoding="utf-8"))
    assert marker["tool"] == "charrnn" and marker["version"]
    line = one_line_error(cli_train(make_config(train={"max_steps": 5}), tmp_path, run))
    assert "--resume" in line and "--overwrite" in line
    res = cli_train(make_config(train={"max_steps": 5}), tmp_path, run, "--overwrite")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [5]  # old lines gone


def test_a_run_folder_from_before_the_marker_is_still_recognised(make_config, tmp_path):
    cfg = make_config(train={"max_steps": 10}, model={"encoding": "embedding", "embedding_dim": 4},
                      log={"tensorboard": True})
    run = train(cfg, quiet=True).run_dir
    assert (run / "projector_config.pbtxt").is_file()  # TensorBoard's projector files are charrnn's too
    (run / MARKER).unlink()  # as charrnn wrote run folders before the marker
    assert is_run_dir(run)
    with pytest.raises(UserError, match="already holds a run"):
        prepare_run_dir(run)
    assert train(cfg, run_dir=run, overwrite=True, quiet=True).step == 10
    assert (run / MARKER).is_file()  # the new run is marked


def test_an_unmarked_run_folder_with_a_foreign_file_is_not_deleted(make_config, tmp_path):
    run = train(make_config(), quiet=True).run_dir
    (run / MARKER).unlink()
    (run / "notes.txt").write_text("mine\n", encoding="utf-8")
    before = snapshot(run)
    assert not is_run_dir(run)
    with pytest.raises(UserError, match="notes.txt"):
        prepare_run_dir(run, overwrite=True)
    assert snapshot(run) == before


@pytest.mark.parametrize("content", ["", "not json", json.dumps({"tool": "othertool"}), "[1, 2]"])
def test_only_charrnns_own_marker_counts(tmp_path, content):
    root = tmp_path / "x"
    root.mkdir()
    (root / MARKER).write_text(content, encoding="utf-8")
    (root / "config.yaml").write_text("a: 1\n", encoding="utf-8")
    before = snapshot(root)
    with pytest.raises(UserError, match="not an empty folder or a charrnn run folder"):
        prepare_run_dir(root, overwrite=True)
    assert snapshot(root) == before


def test_a_new_or_empty_folder_is_used_and_marked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (empty, tmp_path / "new" / "run"):
        paths = prepare_run_dir(root)
        assert paths.checkpoints.is_dir() and is_run_dir(root)
        assert json.loads((root / MARKER).read_text(encoding="utf-8"))["tool"] == "charrnn"


def test_a_run_that_stopped_before_its_first_checkpoint_can_be_trained_into_again(tmp_path):
    """A marked folder without a checkpoint or metrics (say the first attempt failed early) needs no flag."""
    root = tmp_path / "run"
    prepare_run_dir(root)
    (root / "config.yaml").write_text("name: x\n", encoding="utf-8")
    assert prepare_run_dir(root).root == root


def test_a_folder_it_may_not_use_is_refused_before_the_corpus_is_encoded_or_the_width_probed(
        make_config, tmp_path, project, monkeypatch):
    """The refusal used to come after encoding the corpus and probing the width: seconds to minutes of work
    before a one-line answer that needed none of it."""
    from charrnn.training import autosize

    def no_probe(*args, **kwargs):
        raise AssertionError("the width was probed before the run folder was checked")

    monkeypatch.setattr(autosize, "probe", no_probe)
    cfg = make_config("hello world, hello charrnn. " * 8, model={"encoding": "embedding", "hidden_size": "auto",
                                                                  "embedding_dim": "auto", "tie_weights": True},
                      train={"time_budget": 5, "max_steps": None})
    with pytest.raises(UserError, match="not an empty folder or a charrnn run folder"):
        train(cfg, run_dir=project, quiet=True)
    assert not (tmp_path / "runs" / ".cache").exists()  # the corpus was not encoded either


# -- --overwrite deletes what charrnn wrote, and nothing else ------------------------------------------------

def test_overwrite_keeps_the_users_own_files_in_a_run_folder(make_config, tmp_path):
    """Issue 24, case 2: NOTES.md, samples.txt and a folder kept in a run folder by hand were deleted."""
    cfg = make_config(train={"max_steps": 10}, model={"encoding": "embedding", "embedding_dim": 4},
                      log={"tensorboard": True})
    run = train(cfg, quiet=True).run_dir
    (run / "NOTES.md").write_text("what I tried\n", encoding="utf-8")
    (run / "samples.txt").write_text("hihello\n", encoding="utf-8")
    (run / "2024").mkdir()
    (run / "2024" / "plot.png").write_bytes(b"png")
    (run / "checkpoints" / "mine.ckpt").write_bytes(b"another tool's")
    mine = {k: v for k, v in snapshot(run).items() if k.startswith(("NOTES", "samples", "2024", "checkpoints/mine"))}
    res = cli_train(make_config(train={"max_steps": 5}), tmp_path, run, "--overwrite")
    assert res.exit_code == 0, res.output
    after = snapshot(run)
    assert {k: after.get(k) for k in mine} == mine
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5
    assert not list(run.glob("0000*"))  # the old run's projector folder (charrnn's) is gone


@pytest.mark.parametrize("inside", ["corpus", "init_from"])
def test_overwrite_refuses_a_folder_that_holds_what_the_new_run_reads(make_config, tmp_path, inside):
    """`train --data runs/keep/corpus.txt --name keep --overwrite` deleted the corpus it was about to train on;
    `--init-from runs/x --name x --overwrite` destroyed its own source."""
    run = train(make_config(), quiet=True).run_dir
    corpus = run / "corpus.txt"
    corpus.write_text("hihello", encoding="utf-8")
    before = snapshot(run)
    cfg_file = tmp_path / "c.yaml"
    save_config(make_config(), cfg_file)
    what = ["--data", str(corpus)] if inside == "corpus" else ["--init-from", str(run)]
    res = runner.invoke(app, ["train", "--config", str(cfg_file), "--run-dir", str(run), "--overwrite", "-q", *what])
    one_line_error(res, "--overwrite refused", "inside the run folder", str(run))
    assert snapshot(run) == before


def test_an_overwrite_cut_short_leaves_a_folder_overwrite_still_takes(make_config, monkeypatch):
    """Issue 24, case 4: the marker could go first, leaving a folder neither --overwrite nor --resume took."""
    from charrnn.run import folder

    cfg = make_config()
    run = train(cfg, quiet=True).run_dir
    remove = folder._remove
    removed = []

    def remove_then_stop(entry, best_effort):
        if len(removed) == 3:
            raise KeyboardInterrupt
        removed.append(entry.name)
        remove(entry, best_effort)

    monkeypatch.setattr(folder, "_remove", remove_then_stop)
    with pytest.raises(KeyboardInterrupt):
        prepare_run_dir(run, overwrite=True)
    monkeypatch.undo()
    assert MARKER not in removed and (run / MARKER).is_file()
    assert train(cfg, run_dir=run, overwrite=True, quiet=True).step == cfg.train.max_steps


def test_an_old_run_folder_is_marked_before_it_is_cleared(make_config, monkeypatch):
    """A run folder from before the marker is known by its names: a clear cut short must not lose them all."""
    from charrnn.run import folder

    run = train(make_config(), quiet=True).run_dir
    (run / MARKER).unlink()

    def stop(entry, best_effort):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder, "_remove", stop)
    with pytest.raises(KeyboardInterrupt):
        prepare_run_dir(run, overwrite=True)
    assert is_run_dir(run) and (run / MARKER).is_file()


def test_a_folder_whose_run_stopped_before_any_checkpoint_says_overwrite_loses_nothing(make_config, tmp_path):
    run = train(make_config(), quiet=True).run_dir
    for pt in (run / "checkpoints").iterdir():
        pt.unlink()
    line = one_line_error(cli_train(make_config(), tmp_path, run))
    assert "before its first checkpoint" in line and "--overwrite" in line
