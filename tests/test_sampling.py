import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.sampling import (
    SamplingOptions,
    StopFilter,
    choose_next,
    decode_escapes,
    filter_logits,
    generate,
    sample_text,
)
from charrnn.training.loop import train
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
    assert (out[0, :3] - out[0, 0]).tolist() == [0.0, -0.5, -1.0]  # logits scaled by 1/T (and shifted)
    # Temperature flattens the distribution before the nucleus is taken: at T=2 the probabilities are
    # (.429, .260, .158, .096, .058), so top-p 0.8 keeps three; at T=1 (.636, .234, .086, ...) it would keep two.
    out = filter_logits(logits, SamplingOptions(temperature=2.0, top_p=0.8))
    assert torch.isfinite(out).tolist() == [[True, True, True, False, False]]
    assert (out[0, :3] - out[0, 0]).tolist() == [0.0, -0.5, -1.0]  # logits scaled by 1/T (and shifted)
    # Cold: at T=0.5 the probabilities are (.865, .117, .016, ...): top-p 0.8 keeps one.
    out = filter_logits(logits, SamplingOptions(temperature=0.5, top_p=0.8))
    assert torch.isfinite(out).tolist() == [[True, False, False, False, False]]
    # top-k first, then top-p on what is left (renormalised): at T=2 over the best two (.622, .378), top-p 0.6
    # keeps one; top-p first would keep two (.429 + .260 reach 0.6 only with the second) and top-k leave both.
    out = filter_logits(logits, SamplingOptions(temperature=2.0, top_k=2, top_p=0.6))
    assert torch.isfinite(out).tolist() == [[True, False, False, False, False]]


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


def test_stop_filter_streams_with_a_lag_of_the_stop_string_less_one():
    """A character is printed as soon as it can no longer begin the stop string: with a 3-character stop, two
    characters later (the text streams as it is generated), and nothing is held back without a stop string."""
    f = StopFilter("xyz")
    assert [f.feed(c) for c in "abcdxyq"] == ["", "", "a", "b", "c", "d", "x"]
    assert f.flush() == "yq"
    f = StopFilter("xyz")
    assert [f.feed(c) for c in "abxyz"] + [f.feed("more"), f.flush()] == ["", "", "a", "b", "", "", ""]
    assert [StopFilter(None).feed(c) for c in "ab"] == ["a", "b"]


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
    payload = json.loads(res.stdout)
    assert len(payload["samples"]) == 4 and all(len(s) == 32 for s in payload["samples"])
    assert payload["chars_per_sec"] > 0
    again = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "30", "--num-samples", "4",
                                "--seed", "1", "--json"])
    assert json.loads(again.stdout)["samples"] == payload["samples"]
    full = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "200", "--seed", "2"]).stdout
    cut = full.index("e", 2)  # the first e the model generated
    assert cut > 2  # the test means something only if text comes before it
    res = runner.invoke(app, ["sample", str(trained_run), "--prime", "to", "--length", "200", "--stop", "e",
                              "--seed", "2"])
    assert res.exit_code == 0 and res.stdout == full[:cut] + "\n"


def test_cli_stop_cuts_each_of_several_samples(trained_run):
    args = ["sample", str(trained_run), "--prime", "to", "--length", "120", "--num-samples", "3", "--seed", "4",
            "--json"]
    full = json.loads(runner.invoke(app, args).stdout)["samples"]
    stopped = json.loads(runner.invoke(app, [*args, "--stop", "\\n"]).stdout)["samples"]
    expected = [s[: s.index("\n", 2)] if "\n" in s[2:] else s for s in full]
    assert any(len(e) < len(s) for e, s in zip(expected, full, strict=True))
    assert stopped == expected


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


def test_sampling_speed_is_reported_honestly(trained_run, monkeypatch):
    """chars_per_sec is the characters generated over all samples divided by the time they took (a fake clock:
    each reading of it advances 0.5 s)."""
    import types

    import charrnn.cli.sample_command as cli_module

    ticks = iter(range(1000))
    monkeypatch.setattr(cli_module, "time", types.SimpleNamespace(perf_counter=lambda: 0.5 * next(ticks)))
    res = runner.invoke(app, ["sample", str(trained_run), "--length", "100", "--num-samples", "3", "--json",
                              "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chars_per_sec"] == 300 / 0.5  # 3 x 100 characters between two readings


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


# -- stop strings and their escapes ------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "decoded"), [
    ("\\n\\n", "\n\n"), ("é\\n", "é\n"), ("\\t|\\r", "\t|\r"), ("a\\\\nb", "a\\nb"), ("\\x41\\xe9", "Aé"),
    ("\\u00e9\\u4e2d", "é中"), ("\\U0001F600", "😀"), ("\\'\\\"", "'\""), ("日本\\n", "日本\n"), ("", ""),
])
def test_escapes_are_decoded_and_other_characters_kept(raw, decoded):
    assert decode_escapes(raw) == decoded


@pytest.mark.parametrize(("raw", "named"), [
    ("\\", "'\\'"), ("ab\\", "'\\'"), ("\\x", "'\\x'"), ("\\x4", "'\\x4'"), ("\\xg1", "'\\xg1'"),
    ("\\u12", "'\\u12'"), ("\\U0010FFFF\\U00110000", "'\\U00110000'"), ("\\ud800", "'\\ud800'"), ("é\\q", "'\\q'"),
])
def test_malformed_escapes_are_user_errors_naming_the_escape(raw, named):
    with pytest.raises(UserError, match="--stop") as info:
        decode_escapes(raw)
    assert named in str(info.value)


@given(st.text())
def test_escape_decoding_inverts_python_escaping(text):
    """Any text written with Python's escapes (\\xHH, \\uHHHH, \\UHHHHHHHH, \\n, \\\\ ...) decodes back."""
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)  # lone surrogates are not text
    assert decode_escapes(text.encode("unicode_escape").decode("ascii")) == text


@given(st.text().filter(lambda t: "\\" not in t))
def test_text_without_a_backslash_is_kept_exactly(text):
    assert decode_escapes(text) == text


@pytest.mark.parametrize("stop", ["\\", "\\x", "\\u12", "\\z"])
def test_cli_malformed_stop_is_one_line_exit_2(trained_run, stop):
    res = runner.invoke(app, ["sample", str(trained_run), "--stop", stop, "--length", "5"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--stop" in lines[0] and f"'{stop}'" in lines[0], res.stderr
    assert res.stdout == ""  # refused before any text


@pytest.fixture(scope="module")
def accented_run(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("accented")
    cfg = tiny_config(tmp, "le café\nun thé\n" * 20, model={"hidden_size": 32},
                      train={"max_steps": 80, "seq_length": 16, "batch_size": 4, "lr": 0.02})
    return train(cfg, quiet=True).run_dir


def test_non_ascii_stop_with_an_escape_ends_the_sample(accented_run):
    """`--stop 'é\\n'` used to go through Latin-1 (é became Ã©) and never matched."""
    args = ["sample", str(accented_run), "--prime", "le", "--length", "60", "--greedy"]
    full = runner.invoke(app, args).stdout
    cut = full.index("é\n", 2)
    assert cut > 2
    res = runner.invoke(app, [*args, "--stop", "é\\n"])
    assert res.exit_code == 0, res.output
    assert res.stdout == full[:cut] + "\n"


@pytest.mark.parametrize(("stop", "prime", "chunks", "expected"), [
    ("\n\n", "ab\n", ["\n", "cd"], ""),  # begins in the prime, ends in the sample: counts
    ("xyz", "abxy", ["z", "q"], ""),
    ("xyz", "abx", ["y", "w", "x", "y", "z"], "yw"),
    ("ab", "ab", ["c", "d", "a", "b"], "cd"),  # wholly inside the prime: does not count
    ("abcdef", "abc", ["d", "e", "g", "h"], "degh"),  # a stop longer than the prime
    ("\n\n", "", ["a", "\n", "\n"], "a"),
])
def test_stop_filter_sees_a_stop_string_that_begins_in_the_prime(stop, prime, chunks, expected):
    f = StopFilter(stop, prime)
    assert "".join(f.feed(c) for c in chunks) + f.flush() == expected


def test_a_stop_string_straddling_prime_and_sample_ends_the_sample_after_the_prime(trained_run):
    """The printed text never shows the stop string after the prime begins: the prime is kept whole."""
    args = ["sample", str(trained_run), "--length", "60", "--seed", "3"]
    full = runner.invoke(app, [*args, "--prime", "to"]).stdout
    first = full[2]
    res = runner.invoke(app, [*args, "--prime", "to", "--stop", "o" + first])
    assert res.exit_code == 0 and res.stdout == "to\n"
    from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint
    from charrnn.trained import model_from_checkpoint

    model, vocab, _ = model_from_checkpoint(load_checkpoint(resolve_checkpoint(trained_run)))
    assert sample_text(model, vocab, prime="to", length=60, seed=3, stop="o" + first) == ["to"]
    # "to" wholly inside the prime does not count: the sample runs on to the first "to" it generates
    later = full.index("to", 1)
    assert sample_text(model, vocab, prime="to", length=60, seed=3, stop="to") == [full[:later]]


def test_sample_runs_in_the_precision_asked_for(trained_run, monkeypatch):
    import charrnn.sampling as sampling_module

    seen = []
    real = sampling_module.autocast

    def spy(device, precision):
        seen.append(precision)
        return real(device, precision)

    monkeypatch.setattr(sampling_module, "autocast", spy)
    res = runner.invoke(app, ["sample", str(trained_run), "--length", "5", "--seed", "0", "--precision", "bf16",
                              "--prime", "to be"])
    # bf16 LSTM on CPU needs native bf16: either it ran in bf16, or it was refused in one line
    if res.exit_code == 0:
        assert seen and set(seen) == {"bf16"}
    else:
        assert res.exit_code == 2 and "bf16 is not supported" in res.stderr
    seen.clear()
    assert runner.invoke(app, ["sample", str(trained_run), "--length", "5", "--seed", "0"]).exit_code == 0
    assert seen and set(seen) == {"fp32"}
