"""A real TensorBoard server, started on two finished tiny runs, serves what the runs logged.

The server listens on the loopback address only and is always stopped, whatever happens.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from charrnn.training.loop import train
from charrnn.vocab import visible_char

TEXT = "hello world\nhi there\n" * 4
SCALARS = {"train/loss", "train/lr", "train/grad_norm", "train/chars_per_sec",
           "val/loss", "val/bpc", "val/accuracy"}
TENSORBOARD = Path(sys.executable).parent / "tensorboard"
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 must not go to a proxy


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with _no_proxy.open(url, timeout=10) as response:
            return response.read().decode("utf-8")

    def get_json(self, path: str, **params):
        return json.loads(self.get(path, **params))

    def post_json(self, path: str, body: dict):
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with _no_proxy.open(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tb")
    common = {"data": {"val_fraction": 0.2}, "train": {"max_steps": 30}, "log": {"tensorboard": True,
                                                                              "sample_every": 15}}
    train(tiny_config(tmp, TEXT, name="emb", model={"encoding": "embedding", "embedding_dim": 3}, **common),
          quiet=True)
    train(tiny_config(tmp, TEXT, name="gru", model={"cell": "gru"}, **common), quiet=True)
    return tmp / "runs"


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    if not TENSORBOARD.is_file():
        pytest.skip(f"no tensorboard executable next to {sys.executable}")
    port = free_port()
    log_path = tmp_path_factory.mktemp("tb_log") / "tensorboard.log"
    command = [str(TENSORBOARD), "--logdir", str(runs), "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:  # a file, not a pipe: a pipe nobody reads could fill up and block it
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        srv = Server(port)
        deadline, tags = time.monotonic() + 60, None
        while True:  # wait until the server is up and has read both runs' scalars
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                tags = srv.get_json("/data/plugin/scalars/tags")
                if all(set(tags.get(run, {})) == SCALARS for run in ("emb", "gru")):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not serve both runs within 60 s; scalar tags: {tags!r}")
            time.sleep(0.3)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def metrics(runs: Path, run: str) -> list[dict]:
    return [json.loads(line) for line in (runs / run / "metrics.jsonl").read_text().splitlines()]


def f32(x: float) -> float:
    return float(np.float32(x))


def test_both_runs_are_listed_side_by_side(server):
    assert sorted(server.get_json("/data/runs")) == ["emb", "gru"]


@pytest.mark.parametrize("run", ["emb", "gru"])
def test_scalar_series_are_what_the_run_logged(server, runs, run):
    records = metrics(runs, run)
    assert [r["step"] for r in records] == [10, 20, 30]
    series = {tag: server.get_json("/data/plugin/scalars/scalars", run=run, tag=tag) for tag in SCALARS}
    for tag, key in (("val/loss", "val_loss"), ("val/bpc", "val_bpc"), ("val/accuracy", "val_accuracy")):
        served = [(step, value) for _, step, value in series[tag]]
        assert served == [(r["step"], f32(r[key])) for r in records], tag

    train_loss = {step: value for _, step, value in series["train/loss"]}
    assert sorted(train_loss) == list(range(1, 31))  # one point a step
    previous = 0
    for r in records:  # metrics.jsonl's train_loss averages the steps since the previous eval
        window = [train_loss[s] for s in range(previous + 1, r["step"] + 1)]
        assert sum(window) / len(window) == pytest.approx(r["train_loss"], rel=1e-6)
        previous = r["step"]
    lr = {step: value for _, step, value in series["train/lr"]}
    assert [lr[r["step"]] for r in records] == [f32(r["lr"]) for r in records]
    assert all(value > 0 for _, _, value in series["train/grad_norm"] + series["train/chars_per_sec"])


def test_hparams_tab_scores_each_run_by_its_final_val_metrics(server, runs):
    experiment = server.post_json("/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {info["name"] for info in experiment["hparamInfos"]}
    assert {"model.cell", "model.encoding", "model.hidden_size", "train.lr", "seed"} <= names
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["val/loss", "val/bpc", "val/accuracy"]
    groups = server.post_json("/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    by_run = {g["name"]: g for g in groups["sessionGroups"]}
    assert set(by_run) == {"emb", "gru"}
    assert by_run["emb"]["hparams"]["model.encoding"] == "embedding"
    assert by_run["gru"]["hparams"]["model.cell"] == "gru"
    for run, group in by_run.items():
        final = metrics(runs, run)[-1]
        values = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in group["metricValues"]}
        assert values["val/loss"] == (30, f32(final["val_loss"]))
        assert values["val/bpc"] == (30, f32(final["val_bpc"]))


def test_text_samples_are_served(server):
    assert server.get_json("/data/plugin/text/tags") == {"emb": ["samples"], "gru": ["samples"]}
    samples = server.get_json("/data/plugin/text/text", run="emb", tag="samples")
    assert [s["step"] for s in samples] == [15, 30]
    assert all("<pre><code>h" in s["text"] for s in samples)  # a code block that starts with the prime


def test_projector_serves_the_embedding_labelled_by_the_vocabulary(server, runs):
    deadline = time.monotonic() + 30
    while "emb" not in server.get_json("/data/plugin/projector/runs"):  # the plugin scans in the background
        assert time.monotonic() < deadline, "the projector never listed the embedding run"
        time.sleep(0.3)
    [embedding] = server.get_json("/data/plugin/projector/info", run="emb")["embeddings"]
    vocab = json.loads((runs / "emb" / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert embedding["tensorShape"] == [len(vocab), 3]
    labels = server.get("/data/plugin/projector/metadata", run="emb", name=embedding["tensorName"])
    assert labels.split("\n")[:-1] == [visible_char(c) for c in vocab]
    assert "gru" not in server.get_json("/data/plugin/projector/runs")  # one-hot input: nothing to project
