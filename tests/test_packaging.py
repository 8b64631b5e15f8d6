"""The installed package is what `import charrnn` finds, wherever Python runs: a folder named charrnn beside it
(the clone itself, seen from the folder that holds it) must not be taken for the package."""

from __future__ import annotations

import subprocess
import sys


def test_a_folder_named_charrnn_in_the_current_folder_does_not_shadow_the_package(tmp_path):
    # What the folder holding a clone looks like: ./charrnn/ is the repository, with no __init__.py, and a data/
    # folder where the package has charrnn.data. Python takes such a folder for a namespace package; the set-up
    # must make the real package win (a setuptools editable finder, consulted after the path, did not).
    clone = tmp_path / "charrnn"
    (clone / "data").mkdir(parents=True)
    (clone / "data" / "ihello.txt").write_text("hihello", encoding="utf-8")
    (clone / "README.md").write_text("the repository\n", encoding="utf-8")
    code = ("import charrnn; from charrnn.data.batches import make_batcher; "
            "print(charrnn.__file__ is not None, callable(charrnn.load), make_batcher.__name__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True", "make_batcher"]
    res = subprocess.run([sys.executable, "-m", "charrnn", "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout and "sample" in res.stdout
