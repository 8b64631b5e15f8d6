"""The one rule for every file charrnn writes for a user at a path they name (safe_files.check_user_output and
write_user_file): a new regular file, or one charrnn wrote itself; anything else only with --overwrite, and some
things never. Every command with an --out goes through WRITERS below, so the rule is tested in this one place."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fill, one_line_error, read_only, small_disk, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import TrainingFailed, UserError
from charrnn.safe_files import (
    OUTPUT_STAMP,
    atomic_write,
    check_user_output,
    output_stamp,
    remove_stale_temporaries,
    write_user_file,
    written_by_charrnn,
)
from charrnn.training.loop import train

runner = CliRunner()


def inspect_out(run: Path, out: str, *flags: str):
    return runner.invoke(app, ["inspect", str(run), "--text", "hihello", "--out", out, *flags])


WRITERS = {"inspect": inspect_out}  # export --out joins here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run, and the folder a user works in."""
    tmp = tmp_path_factory.mktemp("out")
    cfg = tiny_config(tmp, train={"max_steps": 4, "eval_every": 4, "checkpoint_every": 4})
    return train(cfg, quiet=True).run_dir, tmp


def state(path: Path) -> tuple:
    """What a path is and holds, without following a link."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_file():
        return ("file", path.read_bytes())
    return ("other", path.exists())


def cases(run: Path, tmp: Path) -> dict[str, tuple[str, list[str]]]:
    """Paths that must never be replaced, with the words the refusal must say (each made afresh)."""
    copy = tmp / "model.pt"
    shutil.copy(run / "checkpoints" / "best.pt", copy)
    link = tmp / "link.html"
    link.unlink(missing_ok=True)
    link.symlink_to(tmp / "target.html")
    (tmp / "target.html").write_text(f"<!-- {output_stamp('inspect page')} -->", encoding="utf-8")
    dangling = tmp / "dangling.html"
    dangling.unlink(missing_ok=True)
    dangling.symlink_to(tmp / "nowhere.html")
    fifo = tmp / "fifo.html"
    if not fifo.exists():
        os.mkfifo(fifo)
    return {
        "checkpoint": (str(run / "checkpoints" / "best.pt"), ["checkpoint", "never"]),
        "last checkpoint": (str(run / "checkpoints" / "last.pt"), ["checkpoint"]),
        "a torch file anywhere": (str(copy), ["checkpoint"]),
        "run config": (str(run / "config.yaml"), ["run folder", "never"]),
        "run vocab": (str(run / "vocab.json"), ["run folder"]),
        "run metrics": (str(run / "metrics.jsonl"), ["run folder"]),
        "the run's corpus": (str(tmp / "corpus.txt"), ["the run's corpus", "never"]),
        "a symlink": (str(link), ["symbolic link"]),
        "a dangling symlink": (str(dangling), ["symbolic link"]),
        "a fifo": (str(fifo), ["a pipe", "not a regular file"]),
        "a device": ("/dev/null", ["a device"]),
        "a folder": (str(tmp), ["is a folder", "name a file in it"]),
    }


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_what_is_never_replaced_stays_byte_for_byte(trained, writer, overwrite):
    run, tmp = trained
    for name, (path, words) in cases(run, tmp).items():
        before = state(Path(path))
        res = WRITERS[writer](run, path, *(["--overwrite"] if overwrite else []))
        line = one_line_error(res, path, *words)
        assert ".tmp-" not in line, (name, line)
        assert state(Path(path)) == before, name
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("writer", WRITERS)
def test_a_users_file_is_replaced_only_with_overwrite(trained, writer):
    run, tmp = trained
    mine = tmp / "notes.html"
    mine.write_text("<p>my notes</p>", encoding="utf-8")
    one_line_error(WRITERS[writer](run, str(mine)), str(mine), "not written by charrnn", "--overwrite")
    assert mine.read_text(encoding="utf-8") == "<p>my notes</p>"
    assert WRITERS[writer](run, str(mine), "--overwrite").exit_code == 0
    assert written_by_charrnn(mine)
    assert WRITERS[writer](run, str(mine)).exit_code == 0  # charrnn's own now: replaced without a flag


@pytest.mark.parametrize("writer", WRITERS)
def test_empty_missing_folder_and_process_substitution_name_the_users_path(trained, writer, tmp_path):
    run, _ = trained
    one_line_error(WRITERS[writer](run, ""), "is empty")
    one_line_error(WRITERS[writer](run, str(tmp_path / "no" / "page.html")), str(tmp_path / "no"), "does not exist")
    if sys.platform == "linux":  # bash's >(cat) is a /dev/fd/N that leads to a pipe
        read, write = os.pipe()
        try:
            line = one_line_error(WRITERS[writer](run, f"/dev/fd/{write}"), f"/dev/fd/{write}", "a pipe")
            assert ".tmp-" not in line
        finally:
            os.close(read)
            os.close(write)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_being_read_is_not_written_into(tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    with pytest.raises(UserError, match="inside the run's corpus"):
        check_user_output(corpus / "page.html", keep=[(corpus, "the run's corpus")])


def test_what_charrnn_writes_for_a_user_carries_its_stamp(tmp_path):
    with pytest.raises(ValueError, match=OUTPUT_STAMP):
        write_user_file(tmp_path / "x.html", b"<p>no stamp</p>")
    page = tmp_path / "page.html"
    write_user_file(page, f"<!doctype html>\n<!-- {output_stamp('test')} -->".encode())
    assert written_by_charrnn(page)
    page.write_bytes(b"x" * 600 + OUTPUT_STAMP.encode())  # the stamp counts in a file's head only
    assert not written_by_charrnn(page)


def test_a_full_disk_names_the_file_and_keeps_what_was_there(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        page = disk / "page.html"
        old = f"<!-- {output_stamp('old')} -->".encode()
        page.write_bytes(old)
        fill(disk)
        with pytest.raises(TrainingFailed, match="could not write .*page.html .*No space left.*nothing was replaced"):
            write_user_file(page, old + b"x" * 100_000)
        assert page.read_bytes() == old
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "page.html"]  # no temporary left


def test_a_read_only_disk_is_one_error_naming_the_file(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        read_only(disk)
        with pytest.raises(OSError) as caught:  # the cleanup of the temporary file failed too, before the fix
            atomic_write(disk / "ids.bin", lambda f: f.write(b"x"))
        assert caught.value.filename == str(disk / "ids.bin")
        with pytest.raises(UserError, match="not writable"):
            write_user_file(disk / "page.html", output_stamp("x").encode())


class _InterruptedFile:
    """A file whose third write is interrupted (a second Ctrl-C, or a full disk, in the middle of torch.save)."""

    def __init__(self, f, error: BaseException):
        self.f, self.error, self.writes = f, error, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 3:
            raise self.error
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_what_torchs_zip_writer_hides_comes_out(tmp_path, error):
    """torch.save raises 'RuntimeError: [enforce fail at inline_container.cc] unexpected pos' on its way out,
    hiding the KeyboardInterrupt or OSError that stopped it: charrnn reported a 70-line traceback."""
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    with pytest.raises(type(error)) as caught:
        atomic_write(target, lambda f: torch.save({"w": torch.zeros(10_000)}, _InterruptedFile(f, error)))
    if isinstance(error, OSError):
        assert caught.value.filename == str(target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_temporaries_of_dead_writers_are_removed_and_others_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    gone = tmp_path / f".ids.bin.tmp-{host}-{dead.pid}"
    alive = tmp_path / f".ids.bin.tmp-{host}-{os.getpid()}"
    elsewhere = tmp_path / f".ids.bin.tmp-other-host-{dead.pid}"
    for path in (gone, alive, elsewhere):
        path.write_bytes(b"partial ids")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not gone.exists() and alive.exists() and elsewhere.exists()
