"""The one-step path used for sampling equals the full-sequence forward pass used in training."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.stepper import make_stepper


@pytest.mark.parametrize("cell,nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")])
@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_steps_match_the_sequence_forward(cell, nonlinearity, encoding):
    torch.manual_seed(0)
    model = CharRNN(9, ModelConfig(cell=cell, nonlinearity=nonlinearity, encoding=encoding, embedding_dim=6,
                                   hidden_size=10, num_layers=2)).eval()
    ids = torch.randint(0, 9, (3, 12))
    with torch.no_grad():
        full, full_hidden = model(ids)
        step = make_stepper(model)
        _, warm = model(ids[:, :4])  # warm on a prefix, then step through the rest
        state = step.start(warm, 3, "cpu")
        outs = []
        for t in range(4, 12):
            logits, state = step(ids[:, t], state)
            outs.append(logits)
    torch.testing.assert_close(torch.stack(outs, 1), full[:, 4:], atol=1e-5, rtol=1e-5)
    final = step.to_hidden(state)
    for got, want in zip(final if isinstance(final, tuple) else (final,),
                         full_hidden if isinstance(full_hidden, tuple) else (full_hidden,), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_start_from_zero_state_matches_forward_without_hidden():
    torch.manual_seed(2)
    model = CharRNN(5, ModelConfig(cell="lstm", hidden_size=8, num_layers=3)).eval()
    ids = torch.randint(0, 5, (2, 6))
    with torch.no_grad():
        full, _ = model(ids)
        step = make_stepper(model)
        state = step.start(None, 2, "cpu")
        outs = []
        for t in range(6):
            logits, state = step(ids[:, t], state)
            outs.append(logits)
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=1e-5)
