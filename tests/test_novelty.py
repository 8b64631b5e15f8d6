"""`sample --novelty`: the suffix array, the longest shared stretch, whole records, and names checked against
the file they came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn import novelty as novelty_module
from charrnn.cli import app
from charrnn.cli.sample_command import _novelty_index
from charrnn.data.cache import load_corpus
from charrnn.novelty import NoveltyIndex, novelty, suffix_array
from charrnn.trained import load
from charrnn.training.loop import train
from charrnn.vocab import Vocab

small_ids = st.lists(st.integers(0, 3), max_size=40)


@given(ids=small_ids, wide=st.booleans())
@settings(max_examples=80, deadline=None)
def test_suffix_array_sorts_the_suffixes(ids, wide):
    arr = np.array(ids, dtype=np.uint16 if wide else np.uint8) * (300 if wide else 1)
    assert suffix_array(arr).tolist() == sorted(range(len(ids)), key=lambda i: ids[i:])


def brute_longest(sample: str, text: str) -> tuple[int, int]:
    best = (0, 0)
    for i in range(len(sample)):
        for j in range(len(sample), i + best[0], -1):
            if sample[i:j] in text:
                best = (j - i, i)
                break
    return best


@given(text=st.text("abc", min_size=1, max_size=40), sample=st.text("abcd", max_size=15), wide=st.booleans())
@settings(max_examples=80, deadline=None)
def test_longest_shared_stretch_matches_a_brute_force_search(text, sample, wide):
    vocab = Vocab(list("abcd") + ([chr(0x400 + i) for i in range(300)] if wide else []))
    ids = vocab.encode(text).astype(np.uint16 if wide else np.uint8)
    index = NoveltyIndex(ids, suffix_array(ids))
    assert index.longest_shared(vocab.encode(sample)) == brute_longest(sample, text)


@pytest.mark.parametrize(("sample", "in_train"), [
    ("emma", True),    # the first record: at the start of the text
    ("ava", True),     # a middle record
    ("zoe", True),     # the last record, at the end of the corpus
    ("mma", False),    # part of a record
    ("emm", False),
    ("ava\nzoe", True),
    ("ella", False),
])
def test_whole_record_means_framed_by_the_stop_string(sample, in_train):
    vocab = Vocab.from_text("emma\nava\nzoe\nl")
    ids = vocab.encode("emma\nava\nzoe").astype(np.uint8)
    index = NoveltyIndex(ids, suffix_array(ids))
    assert novelty(index, vocab, sample, "\n", ended_by_stop=True).in_train is in_train
    assert novelty(index, vocab, sample, "\n", ended_by_stop=False).in_train is None  # cut by --length: no verdict
    assert novelty(index, vocab, "\n" + sample, "\n", ended_by_stop=True).in_train is in_train  # stop in the prime


def test_an_empty_sample_ended_by_the_stop_string_is_empty_not_in_train():
    """The stop string straight after the prime (or at once) left an empty record, reported 'in train'."""
    vocab = Vocab.from_text("emma\nava\n\nzoe")
    ids = vocab.encode("emma\nava\n\nzoe").astype(np.uint8)
    index = NoveltyIndex(ids, suffix_array(ids))
    for sample in ("", "\n"):
        report = novelty(index, vocab, sample, "\n", ended_by_stop=True)
        assert report.in_train is None and report.describe().startswith("novelty: empty")
        assert "empty" not in report.to_dict()


def test_index_is_saved_beside_the_ids_and_reused(tmp_path, monkeypatch):
    corpus_file = tmp_path / "t.txt"
    corpus_file.write_text("abracadabra" * 5, encoding="utf-8")
    corpus = load_corpus(corpus_file, tmp_path / "cache")
    first = NoveltyIndex.for_corpus(corpus, 40)
    assert (corpus.entry / "suffixes-40.bin").is_file()
    monkeypatch.setattr(novelty_module, "suffix_array", lambda ids: pytest.fail("the index was built again"))
    again = NoveltyIndex.for_corpus(corpus, 40)
    assert list(again.sa) == list(first.sa) and again.longest_shared(corpus.ids[40:44]) == (4, 0)


def test_the_index_holds_the_training_split_only(tmp_path):
    """A name only in the validation split is new, and so is the training split's cut tail ("car" of "carol"):
    the index that `sample --novelty` builds holds the training split, not the whole corpus."""
    cfg = tiny_config(tmp_path, "ann\nbob\ncarol\nzed\n", data={"val_fraction": 0.39},  # train: "ann\nbob\ncar"
                      train={"max_steps": 2, "eval_every": 2, "checkpoint_every": 2})
    run = train(cfg, quiet=True).run_dir
    model = load(run)
    index = _novelty_index(run, model.config, model.vocab, None, None)
    judged = {name: novelty(index, model.vocab, name, "\n", ended_by_stop=True).in_train
              for name in ("ann", "bob", "car", "carol", "zed")}
    assert judged == {"ann": True, "bob": True, "car": False, "carol": False, "zed": False}


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A small model that has half learnt 40 names of names.txt."""
    tmp = tmp_path_factory.mktemp("names")
    names = (DATA / "names.txt").read_text(encoding="utf-8").splitlines()[:40]
    cfg = tiny_config(tmp, "\n".join(names) + "\n", data={"val_fraction": 0.1},
                      model={"encoding": "embedding", "embedding_dim": 16, "hidden_size": 32},
                      train={"seq_length": 16, "batch_size": 16, "max_steps": 80, "eval_every": 80,
                             "checkpoint_every": 80})
    run = train(cfg, quiet=True).run_dir
    (tmp / "newline.txt").write_text("\n", encoding="utf-8")
    return run, tmp / "corpus.txt", tmp / "newline.txt", cfg


def test_names_say_new_or_in_train_as_the_file_does(names_run):
    run, corpus_file, newline, cfg = names_run
    text = corpus_file.read_text(encoding="utf-8")
    train_text = text[: len(text) - round(len(text) * cfg.data.val_fraction)]
    train_names = set(train_text.split("\n")[:-1])  # whole lines of the training split (the last may be cut)
    res = CliRunner().invoke(app, ["sample", str(run), "--novelty", "--stop", "\\n", "--num-samples", "64",
                                   "--prime-file", str(newline), "--seed", "0", "--temperature", "0.7",
                                   "--length", "30", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    verdicts = []
    for sample, report in zip(out["samples"], out["novelty"], strict=True):
        name = sample.removeprefix("\n")
        assert report["in_train"] is (name in train_names), (name, report)
        assert report["shared_text"] == sample[report["shared_start"]:][: report["longest_shared"]]
        assert report["shared_text"] in train_text
        verdicts.append(report["in_train"])
    assert len(verdicts) == 64 and any(verdicts) and not all(verdicts)  # both kinds, so both were checked


def test_plain_output_labels_every_sample(names_run):
    run, _, newline, _ = names_run
    res = CliRunner().invoke(app, ["sample", str(run), "--novelty", "--stop", "\\n", "--num-samples", "5",
                                   "--prime-file", str(newline), "--seed", "1", "--length", "30"])
    assert res.exit_code == 0, res.output
    labels = [line for line in res.stdout.splitlines() if line.startswith("novelty: ")]
    assert len(labels) == 5 and all(line.startswith(("novelty: in train; ", "novelty: new; ")) for line in labels)


def test_novelty_without_the_training_text_is_one_line(names_run, tmp_path):
    run, corpus_file, _, _ = names_run
    moved = tmp_path / "moved.txt"
    corpus_file.rename(moved)
    try:
        res = CliRunner().invoke(app, ["sample", str(run), "--novelty", "--length", "5"])
    finally:
        moved.rename(corpus_file)
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "is not available" in res.stderr
