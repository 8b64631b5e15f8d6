import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig
from charrnn.evaluate import Metrics, evaluate
from charrnn.model import CharRNN


@pytest.mark.parametrize("n,batch_size,chunk", [(50, 1, 7), (301, 4, 16), (1000, 64, 13), (2, 8, 256)])
def test_evaluate_scores_every_prediction_with_full_context(n, batch_size, chunk):
    torch.manual_seed(0)
    model = CharRNN(11, ModelConfig(cell="lstm", hidden_size=12, num_layers=2)).eval()
    ids = np.random.default_rng(0).integers(0, 11, size=n)
    metrics = evaluate(model, ids, batch_size=batch_size, chunk_length=chunk)
    assert metrics.chars == n - 1
    # Reference for one stream: the whole text in one forward pass.
    if batch_size == 1 or n <= chunk:
        x = torch.from_numpy(ids).long()[None]
        with torch.no_grad():
            logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits[0], x[0, 1:]).item()
        acc = (logits[0].argmax(-1) == x[0, 1:]).float().mean().item()
        assert metrics.loss == pytest.approx(loss, rel=1e-5)
        assert metrics.accuracy == pytest.approx(acc)


def test_metrics_relations():
    m = Metrics.from_sums(loss_sum=2.0 * 100, correct=25, chars=100)
    assert m.loss == 2.0 and m.bpc == pytest.approx(2.0 / math.log(2)) and m.perplexity == pytest.approx(math.e**2)
    assert m.accuracy == 0.25


def test_max_chars_caps_the_scored_text():
    model = CharRNN(5, ModelConfig(hidden_size=4, num_layers=1))
    assert evaluate(model, np.zeros(500, dtype=np.int64), max_chars=100).chars == 100
