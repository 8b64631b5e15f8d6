"""charrnn export: the page samples what `charrnn sample` does (in a real browser), the ONNX graph computes what the
model does, the example sampler prints the CLI's greedy text, and the refusals are one line."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, one_line_error, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.trained import load
from charrnn.training.loop import train

runner = CliRunner()
SHAKESPEARE = (REPO / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
CORPUS = SHAKESPEARE[:6000]
TEXT = SHAKESPEARE[6000:6500]  # 500 characters the models did not train on (all in CORPUS's vocabulary)
PRIME = "ROMEO:\n"
TRAIN = {"seq_length": 32, "batch_size": 8, "max_steps": 40, "lr": 0.02, "eval_every": 40, "checkpoint_every": 40}
# name -> model section: each cell with each encoding (an embedding narrower than the vocabulary makes the page
# build the first layer's table itself; a wide one ships it), and a tied 2-layer LSTM
MODELS = {
    "rnn-onehot": {"cell": "rnn", "nonlinearity": "relu", "encoding": "onehot", "hidden_size": 16, "num_layers": 1},
    "rnn-embedding": {"cell": "rnn", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 16, "num_layers": 2},
    "gru-onehot": {"cell": "gru", "encoding": "onehot", "hidden_size": 16, "num_layers": 2},
    "gru-embedding": {"cell": "gru", "encoding": "embedding", "embedding_dim": 64, "hidden_size": 12, "num_layers": 1},
    "lstm-onehot": {"cell": "lstm", "encoding": "onehot", "hidden_size": 16, "num_layers": 1},
    "lstm-embedding": {"cell": "lstm", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 16,
                       "num_layers": 2},
    "lstm-tied": {"cell": "lstm", "encoding": "embedding", "embedding_dim": 24, "hidden_size": 24, "num_layers": 2,
                  "tie_weights": True},
}
CELLS = ["rnn", "gru", "lstm"]


def train_run(tmp: Path, name: str, model: dict, text: str = CORPUS, **sections) -> Path:
    tmp.mkdir(parents=True)
    cfg = tiny_config(tmp, text, name=name, model=model, data={"val_fraction": 0.1},
                      train={**TRAIN, **sections.pop("train", {})}, **sections)
    return train(cfg, run_dir=tmp / name, quiet=True).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    return {name: train_run(tmp / name, name, model) for name, model in MODELS.items()}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def cli_greedy(run: Path, prime: str = PRIME, length: int = 300) -> str:
    res = invoke("sample", run, "--prime", prime, "--length", length, "--greedy")
    assert res.exit_code == 0, res.output
    return res.stdout


def model_probs(run: Path, text: str = TEXT) -> np.ndarray:
    """softmax of the model's logits after each character of text, read from the zero state: (len(text), V)."""
    m = load(run)
    with torch.no_grad():
        logits, _ = m.net(torch.as_tensor(m.vocab.encode(text))[None])
    return torch.softmax(logits[0], -1).numpy()


def export(run: Path, out: Path, *args) -> Path:
    res = invoke("export", run, "--out", out, *args)
    assert res.exit_code == 0, res.output
    assert str(out) in res.stdout
    return out


# ---- in a real browser ---------------------------------------------------------------------------------------------

def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium not found (apt-get install chromium); the exported page was not tested in a browser"
        if os.environ.get("CHARRNN_REQUIRE_CHROMIUM"):
            pytest.fail(message)  # CI installs it: a missing browser there is a failure, not a skip
        pytest.skip(message)
    return path


def open_page(browser: str, page: Path, fragment: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, loaded from file:// with the network shut off."""
    url = page.resolve().as_uri() + fragment
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                          "--virtual-time-budget=30000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def element(dom: str, tag: str, id_: str) -> str:
    match = re.search(rf'<{tag} id="{id_}"[^>]*>(.*?)</{tag}>', dom, re.S)
    assert match, f"no #{id_} in the page"
    return html.unescape(match.group(1))


def state(dom: str) -> str:
    return re.search(r'<body[^>]* data-state="([a-z]+)"', dom).group(1)


def fragment(**settings) -> str:
    from urllib.parse import quote

    return "#" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in settings.items())


@pytest.mark.parametrize("name", list(MODELS))
def test_page_samples_what_the_cli_does(runs, browser, name, tmp_path):
    page = export(runs[name], tmp_path / "page.html")
    dom = open_page(browser, page, fragment(prime=PRIME, length=300, greedy=1, run=1, probe=TEXT), tmp_path / "p")
    assert state(dom) == "done", element(dom, "div", "status")
    assert element(dom, "pre", "output") + "\n" == cli_greedy(runs[name])
    probs = np.array(json.loads(element(dom, "pre", "probe")))
    np.testing.assert_allclose(probs, model_probs(runs[name]), atol=1e-4, rtol=0)
    assert 'data-engine="wasm-simd"' in dom


def test_plain_javascript_kernel_computes_the_same(runs, browser, tmp_path):
    run = runs["lstm-tied"]
    page = export(run, tmp_path / "page.html")
    dom = open_page(browser, page, fragment(engine="js", prime=PRIME, length=300, greedy=1, run=1, probe=TEXT),
                    tmp_path / "p")
    assert 'data-engine="js"' in dom
    assert element(dom, "pre", "output") + "\n" == cli_greedy(run)
    np.testing.assert_allclose(json.loads(element(dom, "pre", "probe")), model_probs(run), atol=1e-4, rtol=0)


def test_fp16_page_is_half_the_size_with_near_equal_probabilities(runs, browser, tmp_path):
    run = runs["lstm-tied"]
    fp32, fp16 = export(run, tmp_path / "fp32.html"), export(run, tmp_path / "fp16.html", "--weights", "fp16")
    weights = {p: len(re.search(r'id="weights"[^>]*>([^<]*)<', p.read_text()).group(1)) for p in (fp32, fp16)}
    assert 0.4 < weights[fp16] / weights[fp32] < 0.6
    dom = open_page(browser, fp16, fragment(probe=TEXT), tmp_path / "p")
    assert state(dom) == "ready"
    np.testing.assert_allclose(json.loads(element(dom, "pre", "probe")), model_probs(run), atol=5e-3, rtol=0)


def test_seeded_samples_repeat_and_every_setting_is_read(runs, browser, tmp_path):
    page = export(runs["gru-onehot"], tmp_path / "page.html")
    settings = fragment(prime="MEN", length=200, temperature=0.9, top_k=8, top_p=0.95, seed=7, samples=3, run=1)
    first, again = (open_page(browser, page, settings, tmp_path / "p") for _ in range(2))
    texts = element(first, "pre", "output").split("\n" + "-" * 40 + "\n")  # as `charrnn sample --num-samples`
    assert element(again, "pre", "output") == element(first, "pre", "output")
    assert len(texts) == 3 and all(t.startswith("MEN") and len(t) == 203 for t in texts)
    assert len(set(texts)) == 3
    other = open_page(browser, page, settings.replace("seed=7", "seed=8"), tmp_path / "p")
    assert element(other, "pre", "output") != element(first, "pre", "output")
    status = element(first, "div", "status")
    assert "seed 7" in status and "600 characters" in status


def test_the_controls_generate_and_stop(runs, browser, tmp_path):
    page = export(runs["lstm-embedding"], tmp_path / "page.html")
    driven = tmp_path / "driven.html"  # a person's clicks: settings typed into the form, then Generate
    driven.write_text(page.read_text(encoding="utf-8").replace("</body>", """<script>
      charrnn.ready.then(() => {
        document.getElementById("prime").value = "MEN";
        document.getElementById("length").value = "120";
        document.getElementById("greedy").checked = true;
        document.getElementById("generate").click();
      });
    </script></body>"""), encoding="utf-8")
    dom = open_page(browser, driven, "", tmp_path / "p")
    assert state(dom) == "done", element(dom, "div", "status")
    assert element(dom, "pre", "output") + "\n" == cli_greedy(runs["lstm-embedding"], "MEN", 120)
    stopped = tmp_path / "stopped.html"
    stopped.write_text(page.read_text(encoding="utf-8").replace("</body>", """<script>
      charrnn.ready.then(() => {
        document.getElementById("length").value = "100000000";
        const output = document.getElementById("output");
        new MutationObserver(() => {  // Stop once some text has streamed in
          if (output.textContent.length > 3000) document.getElementById("stop").click();
        }).observe(output, { childList: true, subtree: true, characterData: true });
        document.getElementById("generate").click();
      });
    </script></body>"""), encoding="utf-8")
    dom = open_page(browser, stopped, "", tmp_path / "p")
    assert state(dom) == "done" and "stopped after" in element(dom, "div", "status")
    assert 3000 < len(element(dom, "pre", "output")) < 10_000  # streamed in slices; stopped at the next one


def test_the_page_names_a_prime_character_outside_the_vocabulary(runs, browser, tmp_path):
    page = export(runs["rnn-onehot"], tmp_path / "page.html")
    dom = open_page(browser, page, fragment(prime="Mo\u00e9", run=1), tmp_path / "p")
    assert state(dom) == "error"
    assert "'\u00e9' (U+00E9) is not in the model's vocabulary" in element(dom, "div", "status")
    bad = open_page(browser, page, fragment(prime="a", temperature=0, run=1), tmp_path / "p")
    assert state(bad) == "error" and "temperature must be > 0" in element(bad, "div", "status")


def test_page_is_self_contained_and_shows_the_run(runs, tmp_path):
    page = export(runs["lstm-tied"], tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    for pattern in (r"\bsrc=", r"\bhref=", r"url\(", r"@import", r"\bfetch\(", "XMLHttpRequest", "<link", "<iframe",
                    r"\bimport\("):
        assert not re.search(pattern, page), pattern
    assert "default-src 'none'" in page
    data = json.loads(re.search(r'<script id="model" type="application/json">(.*?)</script>', page, re.S).group(1))
    facts = dict(data["info"]["facts"])
    assert data["info"]["run"] == "lstm-tied" and facts["trained on"] == "corpus.txt"
    assert "lstm 2x24, embedding 24 (tied)" in facts["model"] and "bpc" in facts["val loss"]


# ---- ONNX ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ort():
    try:
        import onnxruntime
    except ImportError:
        message = 'onnxruntime not installed (pip install -e ".[export]"); the ONNX export was not tested'
        if os.environ.get("CHARRNN_REQUIRE_ONNX"):
            pytest.fail(message)
        pytest.skip(message)
    return onnxruntime


def onnx_logits_error(ort, run: Path, path: Path, batch: int, state_atol: float = 1e-4) -> float:
    """The largest difference between onnxruntime's logits and the model's over 500 steps of TEXT, for `batch`
    streams (each TEXT rotated by its row number); the state outputs are checked against nn.RNN's too, to
    state_atol plus 1e-5 of their size (an LSTM's cell state grows to about 100 over 500 characters, where float32
    rounding over 500 steps alone reaches 1e-4)."""
    m = load(run)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = m.vocab.encode(TEXT)
    x = np.stack([np.roll(ids, b) for b in range(batch)])  # (batch, T)
    with torch.no_grad():
        want, hidden = m.net(torch.as_tensor(x))
    shape = (m.config.model.num_layers, batch, m.config.model.hidden_size)
    state = {i.name: np.zeros(shape, np.float32) for i in session.get_inputs()[1:]}
    worst = 0.0
    for t in range(x.shape[1]):
        logits, *new = session.run(None, {"ids": x[:, t], **state})
        state = dict(zip(state, new, strict=True))
        worst = max(worst, float(np.abs(logits - want[:, t].numpy()).max()))
    final = hidden if isinstance(hidden, tuple) else (hidden,)
    for got, expected in zip(state.values(), final, strict=True):
        np.testing.assert_allclose(got, expected.numpy(), atol=state_atol, rtol=1e-5)
    return worst


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_logits_equal_the_model_at_batch_1_and_8(runs, ort, name, tmp_path):
    path = export(runs[name], tmp_path / "model.onnx", "--format", "onnx")
    for batch in (1, 8):
        assert onnx_logits_error(ort, runs[name], path, batch) < 1e-4


def test_onnx_inputs_outputs_and_metadata(runs, ort, tmp_path):
    import onnx

    path = export(runs["lstm-tied"], tmp_path / "model.onnx", "--format", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)  # one file
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("ids", ["batch"], "tensor(int64)"), ("h", [2, "batch", 24], "tensor(float)"),
        ("c", [2, "batch", 24], "tensor(float)")]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("logits", ["batch", len(set(CORPUS))]), ("h_next", [2, "batch", 24]), ("c_next", [2, "batch", 24])]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == sorted(set(CORPUS)) and meta["first_char"] == CORPUS[0]
    assert json.loads(meta["state"]) == ["h", "c"] and json.loads(meta["model"])["tie_weights"] is True
    assert meta["run"] == "lstm-tied" and meta["weights"] == "fp32" and int(meta["step"]) == TRAIN["max_steps"]


def test_onnx_fp16_is_half_the_size(runs, ort, tmp_path):
    run = runs["gru-onehot"]
    fp32 = export(run, tmp_path / "fp32.onnx", "--format", "onnx")
    fp16 = export(run, tmp_path / "fp16.onnx", "--format", "onnx", "--weights", "fp16")
    assert 0.45 < fp16.stat().st_size / fp32.stat().st_size < 0.6
    assert onnx_logits_error(ort, run, fp16, 1, state_atol=1e-2) < 2e-2


@pytest.mark.parametrize("name", ["lstm-tied", "gru-embedding"])
def test_example_sampler_prints_the_cli_greedy_text(runs, ort, name, tmp_path):
    path = export(runs[name], tmp_path / "model.onnx", "--format", "onnx")
    res = subprocess.run([sys.executable, str(REPO / "examples" / "sample_onnx.py"), str(path), "--prime", PRIME,
                          "--length", "300"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == cli_greedy(runs[name])


# ---- runs trained in bf16, fine-tuned runs -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def special_runs(runs, tmp_path_factory) -> dict[str, Path]:
    """A GRU trained under bf16 autocast (checkpoints hold float32 weights) and the tied LSTM fine-tuned on a text
    with characters new to it (its vocabulary extended)."""
    tmp = tmp_path_factory.mktemp("special")
    bf16 = train_run(tmp / "bf16", "bf16", MODELS["gru-onehot"], train={"precision": "bf16"})
    new_text = CORPUS.replace("e", "\u00e9").replace("E", "\u00c9") + "{~}"
    tuned = train_run(tmp / "tuned", "tuned", MODELS["lstm-tied"], text=new_text, init_from=str(runs["lstm-tied"]),
                      train={"max_steps": 20})
    return {"bf16": bf16, "tuned": tuned}


def test_bf16_and_fine_tuned_runs_export_the_same_page(special_runs, browser, tmp_path):
    assert {"\u00e9", "\u00c9", "{"} <= set(load(special_runs["tuned"]).vocab.chars)
    tuned_text = TEXT.replace("e", "\u00e9")[:300] + "{~}"
    for name, run in special_runs.items():
        page = export(run, tmp_path / f"{name}.html")
        prime, text = ("M\u00c9N\u00e9", tuned_text) if name == "tuned" else (PRIME, TEXT)
        dom = open_page(browser, page, fragment(prime=prime, length=200, greedy=1, run=1, probe=text), tmp_path / "p")
        assert element(dom, "pre", "output") + "\n" == cli_greedy(run, prime, 200)
        np.testing.assert_allclose(json.loads(element(dom, "pre", "probe")), model_probs(run, text), atol=1e-4,
                                   rtol=0)


def test_bf16_and_fine_tuned_runs_export_the_same_onnx(special_runs, ort, tmp_path):
    for name, run in special_runs.items():
        assert onnx_logits_error(ort, run, export(run, tmp_path / f"{name}.onnx", "--format", "onnx"), 8) < 1e-4


# ---- where it writes, and the refusals -------------------------------------------------------------------------------

def test_default_out_is_in_the_run_folder_and_only_charrnns_own_files_are_replaced(runs, tmp_path):
    """The shared rule (safe_files.py): a page or ONNX file charrnn wrote carries its stamp and is replaced by the
    next export; a user's file at that path only with --overwrite."""
    from charrnn.safe_files import written_by_charrnn

    run = tmp_path / "run"
    shutil.copytree(runs["rnn-onehot"], run)
    assert invoke("export", run).exit_code == 0 and written_by_charrnn(run / "run.html")
    if importlib.util.find_spec("onnx") is not None:
        assert invoke("export", run, "--format", "onnx").exit_code == 0 and written_by_charrnn(run / "run.onnx")
        assert invoke("export", run, "--format", "onnx", "--weights", "fp16").exit_code == 0
    before = (run / "run.html").read_bytes()
    assert invoke("export", run, "--weights", "fp16").exit_code == 0  # its own page: replaced
    assert (run / "run.html").read_bytes() != before
    (run / "run.html").write_text("my notes")  # a user's file in a run folder: never replaced
    one_line_error(invoke("export", run, "--overwrite"), f"{run / 'run.html'} is a file of the run folder")
    assert (run / "run.html").read_text() == "my notes"
    page = tmp_path / "page.html"
    page.write_text("my page")  # a user's file elsewhere: only with --overwrite
    one_line_error(invoke("export", run, "--out", page), f"{page} exists and was not written by charrnn",
                   "--overwrite")
    assert page.read_text() == "my page"
    assert invoke("export", run, "--out", page, "--overwrite").exit_code == 0 and written_by_charrnn(page)
    checkpoint = run / "checkpoints" / "best.pt"
    assert invoke("export", checkpoint).exit_code == 0 and (run / "run-best.html").is_file()


@pytest.mark.parametrize("args,fragments", [
    (["--format", "pdf"], ["--format must be html or onnx", "'pdf'"]),
    (["--weights", "int8"], ["--weights must be fp32 or fp16"]),
    (["--checkpoint", "nope"], ["--checkpoint 'nope'"]),
    (["--out", "/nonexistent-folder/page.html"], ["/nonexistent-folder does not exist", "--out"]),
])
def test_bad_options_are_one_line(runs, args, fragments):
    one_line_error(invoke("export", runs["rnn-onehot"], *args), *fragments)


def test_a_run_without_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    one_line_error(invoke("export", tmp_path / "run", "--out", tmp_path / "x.html"), "has it been trained")


def test_never_replaces_links_folders_or_the_runs_own_files(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["rnn-onehot"], run)
    target = tmp_path / "target.html"
    target.write_text("mine")
    (tmp_path / "link.html").symlink_to(target)
    corpus = Path(load(run).config.data.path)
    cases = [(tmp_path / "link.html", "symbolic link"), (tmp_path, "is a folder"),
             (run / "checkpoints" / "best.pt", "checkpoint"), (run / "checkpoints" / "last.pt", "checkpoint"),
             (run / "config.yaml", "config"), (corpus, "corpus")]
    for out, fragment_ in cases:
        before = out.read_bytes() if out.is_file() else None
        one_line_error(invoke("export", run, "--out", out, "--overwrite"), str(out), fragment_, "--out")
        assert before is None or out.read_bytes() == before
    assert target.read_text() == "mine"
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("export", run, "--out", tmp_path / "file" / "page.html"), "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_one_line(runs, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        one_line_error(invoke("export", runs["rnn-onehot"], "--out", folder / "page.html"), "not writable")
    finally:
        folder.chmod(0o700)


def test_onnx_without_the_extra_names_it(runs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` meets where it is not installed
    one_line_error(invoke("export", runs["rnn-onehot"], "--format", "onnx", "--out", tmp_path / "m.onnx"),
                   "charrnn[export]", "pip install")
    assert not (tmp_path / "m.onnx").exists()


def test_export_never_imports_the_training_loop(runs, tmp_path):
    code = ("import sys; from charrnn.export import export; "
            f"export({str(runs['gru-embedding'])!r}, out={str(tmp_path / 'p.html')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('charrnn.training')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
