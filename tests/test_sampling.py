import math
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.sampling import SamplingOptions, StopFilter, choose_next, filter_logits, generate, sample_text
from charrnn.train import train
from charrnn.vocab import Vocab

runner = CliRunner()
VOCAB = Vocab(list("abcdefgh"))


def random_model(seed=0, cell="lstm"):
    torch.manual_seed(seed)
    return CharRNN(len(VOCAB), ModelConfig(cell=cell, hidden_size=16, num_layers=2)).eval()


def test_top_k_1_equals_greedy():
    model = random_model()
    greedy = sample_text(model, VOCAB, prime="ab", length=40, opts=SamplingOptions(greedy=True))
    top1 = sample_text(model, VOCAB, prime="ab", length=40, opts=SamplingOptions(top_k=1), seed=3)
    assert greedy == top1


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, SamplingOptions(top_p=p))).nonzero()[:, 1].tolist()  # noqa: E731
    assert kept(0.5) == [0]
    assert kept(0.6) == [0, 1]
    assert kept(0.75) == [0, 1]
    assert kept(0.76) == [0, 1, 2]
    assert kept(0.95) == [0, 1, 2, 3]
    assert kept(1.0) == [0, 1, 2, 3, 4]


def test_top_k_then_top_p_compose_after_temperature():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    out = filter_logits(logits, SamplingOptions(temperature=2.0, top_k=3))
    assert torch.isfinite(out).tolist() == [[True, True, True, False, False]]
    assert out[0, 0].item() - out[0, 1].item() == 0.5  # (4 - 3) / 2: logits are scaled by 1/T (and shifted)


def test_low_temperature_approaches_greedy():
    model = random_model(1)
    greedy = sample_text(model, VOCAB, prime="a", length=60, opts=SamplingOptions(greedy=True))
    cold = sample_text(model, VOCAB, prime="a", length=60, opts=SamplingOptions(temperature=1e-3), seed=7)
    assert cold == greedy


def test_same_seed_same_text_and_different_seeds_differ():
    model = random_model(2)
    a = sample_text(model, VOCAB, prime="a", length=80, seed=11)
    b = sample_text(model, VOCAB, prime="a", length=80, seed=11)
    c = sample_text(model, VOCAB, prime="a", length=80, seed=12)
    assert a == b and a != c


def test_num_samples_gives_independent_samples_of_the_requested_length():
    model = random_model(3)
    samples = sample_text(model, VOCAB, prime="abc", length=50, num_samples=4, seed=0)
    assert len(samples) == 4 and all(len(s) == 53 and s.startswith("abc") for s in samples)
    assert len(set(samples)) > 1


def test_batched_streams_equal_single_streams_when_greedy():
    model = random_model(4, cell="gru")
    one = sample_text(model, VOCAB, prime="hg", length=30, opts=SamplingOptions(greedy=True))
    many = sample_text(model, VOCAB, prime="hg", length=30, opts=SamplingOptions(greedy=True), num_samples=3)
    assert many == one * 3


def test_one_step_samples_follow_the_model_softmax():
    """20k draws of the next character: total-variation distance to the softmax below 0.02."""
    model = random_model(5)
    opts = SamplingOptions(temperature=1.5)  # flatten it so every character has real mass
    n = 20_000
    with torch.no_grad():
        logits, _ = model(torch.tensor([VOCAB.encode("abc").tolist()]))
        expected = torch.softmax(logits[0, -1] / 1.5, dim=-1)
    draws = next(generate(model, VOCAB, prime="abc", length=1, opts=opts, num_samples=n, seed=0))
    counts = torch.tensor([draws.count(c) for c in VOCAB.chars], dtype=torch.float64)
    tv = 0.5 * (counts / n - expected.double()).abs().sum().item()
    assert tv < 0.02
    # and a chi-squared statistic within a generous bound for 7 degrees of freedom (p ~ 1e-4 at 30)
    chi2 = (((counts - n * expected.double()) ** 2) / (n * expected.double())).sum().item()
    assert chi2 < 30


def test_choose_next_greedy_is_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert choose_next(logits, SamplingOptions(greedy=True), None).tolist() == [1, 0]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"temperature": 0}, "--temperature"), ({"temperature": -1}, "--temperature"),
    ({"top_k": 0}, "--top-k"), ({"top_p": 0}, "--top-p"), ({"top_p": 1.5}, "--top-p"),
])
def test_impossible_options_are_user_errors(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        SamplingOptions(**kwargs)


@pytest.mark.parametrize("stop,chunks,expected", [
    ("\n\n", ["ab", "\n", "\ncd"], "ab"),
    ("xyz", list("abxyxyzq"), "abxy"),
    (None, ["ab", "c"], "abc"),
    ("zz", list("abc"), "abc"),
])
def test_stop_filter_cuts_at_the_first_stop_string(stop, chunks, expected):
    f = StopFilter(stop)
    out = "".join(f.feed(c) for c in chunks) + f.flush()
    assert out == expected


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("sample")
    text = "to be or not to be, that is the question.\n\n" * 10
    cfg = tiny_config(tmp, text, train={"max_steps": 60, "seq_length": 32, "batch_size": 4, "lr": 0.01},
                      model={"hidden_size": 32})
    return train(cfg, quiet=True).run_dir


def test_cli_sample_json_and_stop(trained_run):
    res = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "30", "--num-samples", "4",
                              "--seed", "1", "--json"])
    assert res.exit_code == 0, res.output
    import json

    payload = json.loads(res.stdout)
    assert len(payload["samples"]) == 4 and all(len(s) == 32 for s in payload["samples"])
    assert payload["chars_per_sec"] > 0
    again = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "30", "--num-samples", "4",
                                "--seed", "1", "--json"])
    assert json.loads(again.stdout)["samples"] == payload["samples"]
    res = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "200", "--stop", "e",
                              "--seed", "2"])
    assert res.exit_code == 0 and "e" not in res.stdout[2:]


def test_unknown_prime_character_is_named(trained_run):
    res = runner.invoke(app, ["sample", str(trained_run), "--prime", "toZ"])
    assert res.exit_code == 2
    assert "'Z'" in res.stderr and "Traceback" not in res.output


def test_sample_into_a_closed_pipe_exits_cleanly(trained_run):
    cmd = (f"{sys.executable} -m charrnn sample {trained_run} --length 20000 --seed 0 | head -c 100 > /dev/null; "
           "echo \"${PIPESTATUS[0]}\"")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "0"
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr


def test_sampling_speed_is_reported_honestly(trained_run):
    res = runner.invoke(app, ["sample", str(trained_run), "--length", "100", "--json", "--seed", "0"])
    import json

    assert math.isfinite(json.loads(res.stdout)["chars_per_sec"])


def test_single_sample_streams_characters_as_they_are_produced(trained_run):
    """Generated characters reach the pipe while the sampler is still running, not at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", str(trained_run), "--prime", "to",
                             "--length", "1000000", "--seed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        received = b""
        while len(received) < 2 + 20:
            chunk = os.read(proc.stdout.fileno(), 64)
            assert chunk, proc.stderr.read().decode()
            received += chunk
        assert received.startswith(b"to")
        assert proc.poll() is None  # a million characters take far longer than this: the text streamed
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_excluded_characters_are_never_drawn():
    """Entries removed by top-k (or with zero probability) are never sampled, at either end of the vocabulary."""
    logits = torch.tensor([[0.0, 5.0, 0.0, 5.0, 0.0]]).repeat(20_000, 1)
    generator = torch.Generator()
    generator.manual_seed(0)
    ids = choose_next(logits, SamplingOptions(top_k=2), generator)
    counts = torch.bincount(ids, minlength=5).tolist()
    assert counts[0] == counts[2] == counts[4] == 0
    assert abs(counts[1] - counts[3]) < 600  # two equal choices: about 10,000 each
