"""What a run leaves for TensorBoard beyond the scalars: text samples, hparams, histograms and the
character embedding in the Projector; and runs that sit side by side under one runs/ folder."""

import json

import numpy as np
import pytest
from conftest import tiny_config
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.projector import projector_config_pb2
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.run.checkpoint import load_checkpoint
from charrnn.trained import model_from_checkpoint
from charrnn.training.loop import train
from charrnn.vocab import visible_char

TEXT = "hello world\nhi there\n"  # a vocabulary with a newline and a space


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def embedding_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embedding_run")
    cfg = tiny_config(tmp, TEXT, model={"encoding": "embedding", "embedding_dim": 4},
                      log={"tensorboard": True, "sample_every": 10, "sample_length": 12})
    return train(cfg, quiet=True).run_dir


def test_text_samples_are_filed_under_samples_once_per_sample_step(embedding_run):
    acc = events(embedding_run)
    assert acc.Tags()["tensors"] == ["samples"]
    samples = acc.Tensors("samples")
    assert [e.step for e in samples] == [10, 20]  # the end of the run is a sample step: logged once
    for event in samples:
        markdown = event.tensor_proto.string_val[0].decode("utf-8")
        body = markdown.removeprefix("```\n").removesuffix("\n```")
        assert markdown != body and body.startswith("h")  # a code block, primed with the corpus' first char
        assert len(body) == 1 + 12 and set(body) <= set(TEXT)


def test_hparams_declare_the_config_and_the_val_metrics(embedding_run):
    content = events(embedding_run).PluginTagToContent("hparams")
    parts = ("experiment", "session_start_info", "session_end_info")
    assert set(content) == {f"_hparams_/{part}" for part in parts}
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/loss", "val/bpc", "val/accuracy"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model.cell"].string_value == "lstm"
    assert hparams["model.encoding"].string_value == "embedding"
    assert hparams["model.hidden_size"].number_value == 16
    assert hparams["train.lr"].number_value == pytest.approx(0.02)
    assert hparams["model.tie_weights"].string_value == "false"  # not 0.0
    assert {info.name for info in experiment.hparam_infos} == set(hparams)


def test_projector_labels_are_the_vocabulary_in_order(embedding_run):
    config = text_format.Parse((embedding_run / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    [embedding] = config.embeddings
    assert embedding.tensor_name.startswith("char_embedding")
    vocab = json.loads((embedding_run / "vocab.json").read_text(encoding="utf-8"))["chars"]
    assert "\n" in vocab and " " in vocab
    labels = (embedding_run / embedding.metadata_path).read_text(encoding="utf-8").split("\n")
    assert labels[-1] == ""  # the file ends with a newline; one label a line, no header for one column
    labels = labels[:-1]
    assert labels == [visible_char(c) for c in vocab]
    assert labels[vocab.index("\n")] == "\\n" and labels[vocab.index(" ")] == "␣"
    assert all(label.strip() for label in labels) and len(set(labels)) == len(labels)
    rows = np.loadtxt(embedding_run / embedding.tensor_path, delimiter="\t", ndmin=2)
    weights = load_checkpoint(embedding_run / "checkpoints" / "last.pt")["model"]["embedding.weight"]
    np.testing.assert_allclose(rows, weights.numpy(), rtol=1e-5, atol=1e-6)


def test_histograms_are_off_by_default_and_every_n_evals_when_asked(embedding_run, make_config):
    assert events(embedding_run).Tags()["histograms"] == []
    cfg = make_config(TEXT, train={"max_steps": 40}, log={"tensorboard": True, "histogram_every": 2})
    run_dir = train(cfg, quiet=True).run_dir
    acc = events(run_dir)
    model = model_from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "last.pt"))[0]
    names = [name for name, _ in model.named_parameters()]
    assert set(acc.Tags()["histograms"]) == {f"{kind}/{n}" for kind in ("weights", "grads") for n in names}
    for tag in acc.Tags()["histograms"]:
        assert [e.step for e in acc.Histograms(tag)] == [20, 40]  # evals at 10, 20, 30, 40: every second one


@pytest.mark.parametrize("tensorboard", [True, False])
def test_samples_are_generated_only_where_tensorboard_keeps_them(make_config, monkeypatch, tensorboard):
    """A sample costs sample_length steps of the model one character at a time; with TensorBoard off it has
    nowhere to go, so none is drawn (they were drawn and thrown away)."""
    from charrnn.training import trainer

    drawn = []
    real = trainer.sample_text
    monkeypatch.setattr(trainer, "sample_text", lambda *a, **k: drawn.append(1) or real(*a, **k))
    cfg = make_config(TEXT, train={"max_steps": 20}, log={"tensorboard": tensorboard, "sample_every": 5,
                                                          "sample_length": 8})
    train(cfg, quiet=True)
    assert len(drawn) == (4 if tensorboard else 0)  # steps 5, 10, 15, 20


def test_visible_char_labels_whitespace_and_control_characters():
    chars = ["\n", " ", "\t", "\r", "\x00", "\u200b", "\u3000", "a", "é", "\\", "n"]
    labels = [visible_char(c) for c in chars]
    assert labels == ["\\n", "␣", "\\t", "\\r", "U+0000", "U+200B", "U+3000", "a", "é", "\\", "n"]
    assert all(label.strip() and label.isprintable() for label in labels)


def test_resume_keeps_the_events_of_the_checkpoint_step(make_config):
    """Events after the checkpoint are purged on resume; those of the checkpoint's own step stay."""
    run_dir = train(make_config(TEXT, log={"tensorboard": True}), quiet=True).run_dir
    train(make_config(TEXT, train={"max_steps": 30}, log={"tensorboard": True}), resume=True, quiet=True)
    acc = events(run_dir)
    assert [e.step for e in acc.Scalars("val/loss")] == [10, 20, 30]
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 31))
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("val/loss")] == pytest.approx([r["val_loss"] for r in logged])


runner = CliRunner()


def test_runs_side_by_side_and_an_existing_run_is_kept(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: base\ndata: {path: corpus.txt, val_fraction: 0.0}\n"
        "model: {cell: gru, encoding: onehot, hidden_size: 8, num_layers: 1}\n"
        "train: {seq_length: 6, batch_size: 1, max_steps: 4, eval_every: 2, checkpoint_every: 4}\n"
        f"log: {{dir: {tmp_path / 'runs'}, sample_every: 0}}\n", encoding="utf-8")
    base = ["train", "--config", str(config), "--data", str(corpus), "-q"]

    def invoke(*args):
        return runner.invoke(app, [*base, *args])

    for args in (["--name", "a"], ["--name", "b"], ["--run-dir", str(tmp_path / "runs" / "c")]):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["a", "b", "c"]
    for name in "abc":
        assert list((runs / name).glob("events.out.tfevents.*")), name
        assert [e.step for e in events(runs / name).Scalars("val/loss")] == [2, 4]

    metrics_before = (runs / "a" / "metrics.jsonl").read_bytes()
    events_before = sorted((runs / "a").glob("events.out.tfevents.*"))
    assert len([e for e in events_before if not e.name.endswith(".status")]) == 1
    for args in (["--name", "a"], ["--run-dir", str(runs / "a")]):
        res = invoke(*args)
        assert res.exit_code == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr, res.output
    assert (runs / "a" / "metrics.jsonl").read_bytes() == metrics_before
    assert sorted((runs / "a").glob("events.out.tfevents.*")) == events_before

    res = invoke("--run-dir", str(runs / "a"), "--overwrite", "--set", "train.max_steps=2")
    assert res.exit_code == 0, res.output
    lines = (runs / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2]
    after = sorted(p.name for p in (runs / "a").glob("events.out.tfevents.*"))
    assert not set(after) & {e.name for e in events_before}  # the old run's events are gone
    assert sorted(name.endswith(".status") for name in after) == [False, True]
