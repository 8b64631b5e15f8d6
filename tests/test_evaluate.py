import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig
from charrnn.evaluate import Metrics, evaluate
from charrnn.model import CharRNN


def reference_sums(model, ids: np.ndarray, streams: int) -> tuple[float, int]:
    """(loss sum, correct) the contract promises: the text cut into `streams` equal contiguous streams, each
    scored in one forward pass from a zero state, the remainder continuing the last stream."""
    n = len(ids) - 1
    length = n // streams
    bounds = [(s * length, (s + 1) * length) for s in range(streams)]
    bounds[-1] = (bounds[-1][0], n)  # the last stream runs on to the end of the text
    loss_sum, correct = 0.0, 0
    for lo, hi in bounds:
        x = torch.from_numpy(ids[lo:hi + 1]).long()[None]
        with torch.no_grad():
            logits, _ = model(x[:, :-1])
        loss_sum += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
        correct += (logits[0].argmax(-1) == x[0, 1:]).sum().item()
    return loss_sum, correct


# (n, batch_size, chunk, streams the function must use): one stream; four streams that divide the text
# exactly; 64 streams with a 39-character remainder; a text shorter than a chunk; more streams asked than chunks.
@pytest.mark.parametrize("n,batch_size,chunk,streams", [(50, 1, 7, 1), (301, 4, 16, 4), (1000, 64, 13, 64),
                                                        (2, 8, 256, 1), (200, 64, 16, 12)])
def test_evaluate_scores_every_prediction_with_full_context(n, batch_size, chunk, streams):
    torch.manual_seed(0)
    model = CharRNN(11, ModelConfig(cell="lstm", hidden_size=12, num_layers=2)).eval()
    ids = np.random.default_rng(0).integers(0, 11, size=n)
    metrics = evaluate(model, ids, batch_size=batch_size, chunk_length=chunk)
    assert metrics.chars == n - 1
    loss_sum, correct = reference_sums(model, ids, streams)
    assert metrics.loss == pytest.approx(loss_sum / (n - 1), rel=1e-5)
    assert metrics.accuracy == pytest.approx(correct / (n - 1), abs=1e-9)
    if streams > 1:  # the streams are scored from a zero state: not the same as one pass over the whole text
        one_pass = reference_sums(model, ids, 1)[0] / (n - 1)
        assert abs(metrics.loss - one_pass) > 1e-6


def test_metrics_relations():
    m = Metrics.from_sums(loss_sum=2.0 * 100, correct=25, chars=100)
    assert m.loss == 2.0 and m.bpc == pytest.approx(2.0 / math.log(2)) and m.perplexity == pytest.approx(math.e**2)
    assert m.accuracy == 0.25


def test_max_chars_caps_the_scored_text():
    model = CharRNN(5, ModelConfig(hidden_size=4, num_layers=1))
    assert evaluate(model, np.zeros(500, dtype=np.int64), max_chars=100).chars == 100


def test_evaluations_while_training_score_a_sample_and_eval_scores_the_whole_split(tmp_path):
    """train.eval_max_chars caps what an evaluation during training scores (on a 1 GB corpus the whole split
    would cost minutes at every evaluation); `charrnn eval` afterwards scores every prediction of the split."""
    import json

    from conftest import tiny_config
    from typer.testing import CliRunner

    from charrnn.cli import app
    from charrnn.run.checkpoint import load_checkpoint
    from charrnn.training.loop import train
    from charrnn.training.validation import EVAL_MIN_CHARS, EVAL_SHARE, eval_char_cap

    text = "".join(np.random.default_rng(0).choice(list("abcdefgh \n"), size=20_000))
    cfg = tiny_config(tmp_path, text, data={"val_fraction": 0.1},
                      train={"max_steps": 4, "eval_every": 2, "eval_max_chars": 256})
    run = train(cfg, quiet=True).run_dir
    assert 0 < load_checkpoint(run / "checkpoints" / "last.pt")["val"]["chars"] <= 256
    res = CliRunner().invoke(app, ["eval", str(run), "--checkpoint", "last", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chars"] == 2_000 - 1
    # auto, the default: a quarter of what is trained between two evaluations, at least EVAL_MIN_CHARS
    auto = tiny_config(tmp_path, text, train={"eval_every": 1000, "batch_size": 64, "seq_length": 128})
    assert eval_char_cap(auto) == max(EVAL_MIN_CHARS, int(EVAL_SHARE * 1000 * 64 * 128)) == 2_048_000
