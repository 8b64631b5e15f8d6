"""notebooks/rnn-from-scratch.ipynb runs top to bottom, and its assertions hold against the trained models; a wrong
weight in a hand-written step fails it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = REPO / "notebooks" / "rnn-from-scratch.ipynb"


def execute(nb: nbformat.NotebookNode, runs: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel of this interpreter (a python3 kernelspec installed elsewhere on the
    machine must not take its place) from the notebook's folder, its run folders under `runs`."""
    spec = runs.parent / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parent.parent))  # searched before the user's and the system's
    monkeypatch.setenv("CHARRNN_NOTEBOOK_RUNS", str(runs))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + out.get("data", {}).get("text/html", ""))
    return "\n".join(texts)


def test_the_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nb = execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path / "runs", monkeypatch)
    shown = outputs(nb)
    for line in ("max abs difference, tanh step by hand vs nn.RNN", "predicts 'ihello'", "temperature 1.2",
                 "<progress"):  # the training bar is drawn as HTML in a notebook
        assert line in shown
    assert (tmp_path / "runs" / "shakespeare" / "checkpoints" / "best.pt").is_file()


def test_the_stored_notebook_shows_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.get("outputs") for cell in code)  # it reads without running it
    assert not any(out.get("output_type") == "error" for cell in code for out in cell.outputs)


def test_a_wrong_weight_in_the_hand_written_step_fails_the_notebook(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    hand = next(cell for cell in nb.cells if "def tanh_step" in cell.source)
    right = "W_ih, W_hh = rnn.weight_ih_l0.detach(), rnn.weight_hh_l0.detach()"
    assert right in hand.source
    hand.source = hand.source.replace(right, right + "\nW_hh = W_hh.clone()\nW_hh[0, 1] += 0.01")
    nb.cells = nb.cells[: nb.cells.index(hand) + 1]  # no need to train the later models
    with pytest.raises(CellExecutionError, match="AssertionError"):
        execute(nb, tmp_path / "runs", monkeypatch)
