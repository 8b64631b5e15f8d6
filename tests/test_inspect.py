"""charrnn inspect: the recorded states are the real ones, the bits are eval's, the page works in a browser."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn.inspection.page import page_data, render_page
from charrnn.inspection.recording import MAX_LENGTH, Recording, record
from charrnn.inspection.units import PROPERTIES, rank_units, saturation, text_properties
from charrnn.model import CharRNN
from charrnn.training.loop import train

runner = CliRunner()
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]


def tiny_model(cell: str, nonlinearity: str = "tanh", vocab: int = 9, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(vocab, ModelConfig(cell=cell, nonlinearity=nonlinearity, encoding="embedding", embedding_dim=6,
                                      hidden_size=10, num_layers=2)).eval()


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("warm", [0, 5])
def test_recorded_states_equal_the_torch_modules(cell, nonlinearity, warm):
    model = tiny_model(cell, nonlinearity)
    ids = np.random.default_rng(1).integers(0, 9, size=warm + 14)
    rec = record(model, ids[warm:], ids[:warm])
    x = torch.as_tensor(ids)[None]
    with torch.no_grad():
        for t in range(14):  # nn.RNN/GRU/LSTM's final state after each prefix: every layer at every character
            _, hidden = model.rnn(model.encode(x[:, : warm + t + 1]))
            h, c = hidden if cell == "lstm" else (hidden, None)
            np.testing.assert_allclose(rec.h[:, t], h[:, 0].numpy(), atol=1e-5, rtol=0)
            if cell == "lstm":
                np.testing.assert_allclose(rec.c[:, t], c[:, 0].numpy(), atol=1e-5, rtol=0)
        out, _ = model.rnn(model.encode(x))
        np.testing.assert_allclose(rec.h[-1], out[0, warm:].numpy(), atol=1e-5, rtol=0)
        logits, _ = model(x)
    # bits and top-5 are those of the full forward pass; with no warm-up the first character has no guess
    logp = torch.log_softmax(logits[0], -1).numpy()
    want = -logp[np.arange(warm - 1, warm + 13), ids[warm:]] / math.log(2) if warm else None
    if warm:
        np.testing.assert_allclose(rec.bits, want, atol=1e-4)
    else:
        assert math.isnan(rec.bits[0])
        np.testing.assert_allclose(rec.bits[1:], -logp[np.arange(13), ids[1:]] / math.log(2), atol=1e-4)
    np.testing.assert_allclose(rec.top_probs[-1], np.sort(np.exp(logp[warm + 12]))[::-1][:5], atol=1e-5)
    assert (rec.c is None) == (cell != "lstm")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recorded_gates_follow_the_documented_equations(cell):
    model = tiny_model(cell)
    ids = np.random.default_rng(2).integers(0, 9, size=10)
    rec = record(model, ids)
    H = 10
    with torch.no_grad():
        below = model.encode(torch.as_tensor(ids)[None])[0].numpy()  # layer 0's input at each character
        for k in range(2):
            w_ih, w_hh, b_ih, b_hh = (getattr(model.rnn, f"{n}_l{k}").numpy()
                                      for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            h_prev = np.vstack([np.zeros((1, H)), rec.h[k, :-1]])
            pre = below @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh
            sig = 1 / (1 + np.exp(-pre))
            if cell == "lstm":  # PyTorch's rows: i, f, g, o; recorded: input, forget, output
                want = [sig[:, :H], sig[:, H : 2 * H], sig[:, 3 * H :]]
            else:  # r, z, n; recorded: reset, update
                want = [sig[:, :H], sig[:, H : 2 * H]]
            for g, w in enumerate(want):
                np.testing.assert_allclose(rec.gates[k, g], w, atol=1e-5)
            below = rec.h[k]
    sat = saturation(rec)
    assert list(sat) == (["input", "forget", "output"] if cell == "lstm" else ["reset", "update"])
    assert all(0 <= lo <= 1 and 0 <= hi <= 1 and lo + hi <= 1 for layers in sat.values() for units in layers
               for lo, hi in units)


def test_saturation_counts_the_steps_below_and_above_per_gate_and_unit():
    # one layer, gates (reset, update), 4 steps, 2 units: values chosen so each count differs
    gates = np.array([[[[0.05, 0.5], [0.05, 0.95], [0.95, 0.99], [0.5, 0.02]],    # reset
                       [[0.99, 0.01], [0.2, 0.01], [0.01, 0.01], [0.92, 0.5]]]])  # update
    rec = Recording(ids=np.zeros(4, dtype=np.int64), bits=np.zeros(4), top_ids=np.zeros((4, 1), dtype=np.int64),
                    top_probs=np.ones((4, 1)), h=np.zeros((1, 4, 2)), c=None, gates=gates,
                    gate_names=("reset", "update"))
    # per unit: [share of steps below 0.1, share above 0.9]
    assert saturation(rec) == {"reset": [[[0.5, 0.25], [0.25, 0.5]]], "update": [[[0.25, 0.5], [0.75, 0.0]]]}


def test_plain_rnn_has_no_gates():
    rec = record(tiny_model("rnn"), np.arange(5))
    assert rec.gates is None and saturation(rec) == {}


# ---- properties of the text --------------------------------------------------------------------------------------

def prop(text: str, name: str) -> list[int]:
    return [int(v) for v in text_properties(text)[name]]


def test_strings_comments_and_brackets_in_python():
    code = 'x = f("a(b", \'c\')  # it\'s (\ny = """q\n"r"\n"""\n'
    on = lambda name: [i for i, v in enumerate(prop(code, name)) if v]  # noqa: E731
    # "a(b" and 'c' (closing quotes are outside); the triple-quoted string runs over lines to its third quote
    assert on("inside a string") == [6, 7, 8, 9, 13, 14, *range(32, 43)]
    assert on("inside a comment") == list(range(19, 27))  # the apostrophe in the comment opens nothing
    assert prop(code, "bracket depth") == [0] * 5 + [1] * 11 + [0] * (len(code) - 16)  # ( in strings/comments: no


def test_position_indentation_words_and_case():
    text = "ab\n    if X:\n\tz"
    assert prop(text, "position in line") == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert prop(text, "indentation") == [0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 8, 8]
    assert prop(text, "start of a word") == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1]
    assert prop(text, "upper case") == [0] * 10 + [1, 0, 0, 0, 0]


def test_apostrophes_in_words_open_no_string_but_prefixed_strings_do():
    assert prop("don't stop", "inside a string") == [0] * 10
    assert prop("x = r'a'", "inside a string") == [0, 0, 0, 0, 0, 1, 1, 0]
    assert prop("'open\nx", "inside a string") == [1, 1, 1, 1, 1, 0, 0]  # a one-line string ends with its line


@given(st.text(alphabet=st.sampled_from(list("ab '\"#()[]{}\\\n\t")), max_size=60))
def test_properties_are_well_formed(text):
    props = text_properties(text)
    assert set(props) == set(PROPERTIES)
    assert all(len(v) == len(text) for v in props.values())
    assert (props["bracket depth"] >= 0).all() and (props["indentation"] >= 0).all()
    for i in range(len(text)):
        if i and text[i - 1] == "\n":
            assert props["position in line"][i] == 0
        if props["inside a comment"][i]:
            assert not props["inside a string"][i]


def test_rank_units_finds_a_planted_unit():
    text = "ab(cd(e)f)g(h)" * 10
    rng = np.random.default_rng(0)
    h = rng.uniform(-1, 1, size=(2, len(text), 6))
    depth = text_properties(text)["bracket depth"]
    h[1, :, 4] = -0.3 * depth  # unit 4 of layer 2 follows bracket depth (negatively)
    rec = Recording(ids=np.zeros(len(text), dtype=int), bits=np.zeros(len(text)), top_ids=np.zeros((len(text), 5)),
                    top_probs=np.zeros((len(text), 5)), h=h, c=None, gates=None)
    ranked = rank_units(rec, text)
    assert ranked["bracket depth"][0] == {"unit": "L2:4", "r": -1.0}
    assert "inside a string" not in ranked  # the text has no string: nothing to correlate with


# ---- the command ---------------------------------------------------------------------------------------------------

CORPUS = "".join(f"def f{i}(x):\n    return 'v{i % 7}' + (x * {i % 5})\n" for i in range(60))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    cfg = tiny_config(tmp, CORPUS, data={"val_fraction": 0.12},
                      model={"cell": "lstm", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 12,
                             "num_layers": 2},
                      train={"seq_length": 16, "batch_size": 4, "max_steps": 30})
    return train(cfg, run_dir=tmp / "run", quiet=True).run_dir


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_mean_bits_equal_eval_bpc_on_a_split(run_dir):
    res = invoke("inspect", run_dir, "--split", "val", "--length", MAX_LENGTH, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    metrics = json.loads(invoke("eval", run_dir, "--split", "val", "--json").stdout)
    n_val = round(len(CORPUS) * 0.12)
    assert len(data["text"]) == n_val and data["chars_scored"] == metrics["chars"] == n_val - 1
    assert data["text"] == CORPUS[-n_val:]
    assert abs(data["bpc"] - metrics["bpc"]) < 1e-4
    assert data["bits"][0] is None and abs(np.mean(data["bits"][1:]) - metrics["bpc"]) < 1e-4
    assert all(len(top) == 5 and sum(p for _, p in top) <= 1 + 1e-6 for top in data["top5"][1:])
    assert set(data["units"]) >= {"inside a string", "bracket depth", "position in line", "indentation"}


def test_start_warms_the_state_on_the_text_before(run_dir):
    text = CORPUS[:300]
    whole = json.loads(invoke("inspect", run_dir, "--text", text, "--json").stdout)
    part = json.loads(invoke("inspect", run_dir, "--text", text, "--start", 200, "--json").stdout)
    assert part["text"] == text[200:]
    np.testing.assert_allclose(part["bits"], whole["bits"][200:], atol=1e-4)


def test_page_is_written_self_contained(run_dir, tmp_path):
    out = tmp_path / "page.html"
    res = invoke("inspect", run_dir, "--split", "train", "--length", 500, "--out", out)
    assert res.exit_code == 0, res.output
    assert "bpc" in res.stdout and str(out) in res.stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    # nothing that could load anything: no src/href attributes, no url(), no fetch or XHR, and a CSP that forbids it
    for pattern in (r"\bsrc=", r"\bhref=", r"url\(", r"@import", r"\bfetch\(", "XMLHttpRequest", "<link", "<iframe"):
        assert not re.search(pattern, page), pattern
    assert "default-src 'none'" in page
    assert (run_dir / "inspect.html").exists() is False
    assert invoke("inspect", run_dir).exit_code == 0 and (run_dir / "inspect.html").is_file()


def test_page_data_is_compact_and_stays_inside_its_script_element():
    model = tiny_model("lstm")
    ids = np.random.default_rng(0).integers(0, 9, size=50)
    data = page_data(record(model, ids), "a" * 50, list("abcdefghi"), {"run": "r"})
    assert data["kinds"] == ["h", "c"]
    assert all(0 <= p <= 10_000 for p in data["top_p"] if p >= 0)
    assert "</script" not in render_page({**data, "text": "</script><b>"}).split('<script id="data"')[1].split(
        "</script>")[0]


@pytest.mark.parametrize("args,fragments", [
    (["--split", "dev"], ["--split", "train, val or test"]),
    (["--text", ""], ["--text is empty"]),
    (["--text", "def \u00e9"], ["'\u00e9'", "vocabulary"]),  # named as `sample` names it
    (["--length", MAX_LENGTH + 1], [f"{MAX_LENGTH:,}", "limit"]),
    (["--text", "x" * 30, "--length", 20], ["30", "--length"]),
    (["--text", "x" * (MAX_LENGTH + 5)], [f"{MAX_LENGTH + 5:,}", f"limit of {MAX_LENGTH:,}"]),
    (["--start", 10 ** 6], ["past the end"]),
    (["--text", "x", "--split", "val"], ["one of"]),
    (["--out", "/nonexistent-folder/page.html"], ["/nonexistent-folder", "does not exist"]),
])
def test_bad_input_is_one_line(run_dir, args, fragments):
    res = invoke("inspect", run_dir, *args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_without_checkpoint_and_empty_file(tmp_path):
    (tmp_path / "run").mkdir()
    res = invoke("inspect", tmp_path / "run")
    assert res.exit_code == 2 and "has it been trained" in res.stderr


def test_empty_file(run_dir, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    res = invoke("inspect", run_dir, "--file", tmp_path / "empty.txt")
    assert res.exit_code == 2 and "empty" in res.stderr


# ---- in a real browser ---------------------------------------------------------------------------------------------

def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def dump_dom(browser: str, page, fragment: str, profile) -> str:
    """The page's DOM after its scripts ran, loaded from file:// with the network shut off."""
    url = page.resolve().as_uri() + fragment
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                          "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def text_colours(dom: str) -> list[str]:
    box = dom.split('<div id="text"', 1)[1].split("</div>", 1)[0]
    return re.findall(r'<span[^>]*style="background: ([^;"]+)', box)


def shown_text(dom: str) -> str:
    box = dom.split('<div id="text"', 1)[1].split(">", 1)[1].split("</div>", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", "", box)).replace("\u21b5", "")


def test_page_renders_in_headless_chromium(run_dir, tmp_path):
    browser = find_chromium()
    if browser is None:
        message = "Chromium not found (apt-get install chromium); the page was not tested in a browser"
        if os.environ.get("CHARRNN_REQUIRE_CHROMIUM"):
            pytest.fail(message)  # CI (.ci/run) installs it: a missing browser there is a failure, not a skip
        pytest.skip(message)
    page = tmp_path / "page.html"
    assert invoke("inspect", run_dir, "--split", "val", "--out", page).exit_code == 0
    text = CORPUS[-round(len(CORPUS) * 0.12):]
    surprise = dump_dom(browser, page, "", tmp_path / "profile")
    assert shown_text(surprise) == text
    base = text_colours(surprise)
    assert len(base) == len(text)
    # a unit chosen in the URL recolours the text (and a different unit differently)
    unit_a = dump_dom(browser, page, "#unit=L1:3", tmp_path / "profile")
    unit_b = dump_dom(browser, page, "#unit=L2:c7", tmp_path / "profile")
    assert 'id="unit-name">L1:3<' in unit_a and 'id="unit-name">L2:c7<' in unit_b
    assert len(text_colours(unit_a)) == len(text) and text_colours(unit_a) != base
    assert text_colours(unit_b) != text_colours(unit_a)
    # the top-5 panel: five characters, probabilities that sum to at most 1, at the default and a chosen position
    for dom in (surprise, dump_dom(browser, page, "#pos=40", tmp_path / "profile")):
        items = re.findall(r'<li data-char="([^"]*)" data-p="([0-9.]+)"', dom.split('id="top5"', 1)[1])
        assert len(items) == 5 and all(char for char, _ in items)
        assert 0 < sum(float(p) for _, p in items) <= 1
    assert "position 40:" in dom
    # keyboard and mouse: two right arrows step to unit 5, a click on a character shows its guesses
    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text(encoding="utf-8").replace("</body>", """<script>
      setTimeout(() => {
        for (const key of ["ArrowRight", "ArrowRight"]) document.dispatchEvent(new KeyboardEvent("keydown", { key }));
        document.querySelectorAll("#text span")[33].click();
      }, 200);
    </script></body>"""), encoding="utf-8")
    dom_driven = dump_dom(browser, driven, "#unit=L1:3", tmp_path / "profile")
    assert 'id="unit-name">L1:5<' in dom_driven and "position 33:" in dom_driven
    assert text_colours(dom_driven) not in (base, text_colours(unit_a))
    # the units table and the gate-saturation plots were drawn
    assert dom.count("<figure>") == 3 and dom.count("<circle") == 3 * 2 * 12
    assert re.search(r'<button data-unit="L\d:c?\d+"', dom)


def test_json_into_a_closed_pipe_exits_cleanly(run_dir):
    """`charrnn inspect RUN --json | head` ends quietly with exit 0, as sample does (it said 'error: Broken pipe')."""
    cmd = (f"{sys.executable} -m charrnn inspect {run_dir} --split train --json | head -c 100 > /dev/null; "
           "echo \"${PIPESTATUS[0]}\"")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "0", res.stderr
    assert res.stderr == ""
