"""The model replays the documented RNN / GRU / LSTM equations, step by step and layer by layer."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN, parameter_table

V = 7


def manual_forward(model: CharRNN, ids: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) computed from the equations in the PyTorch docs, with explicit loops."""
    cfg, rnn = model.cfg, model.rnn
    x = model.encode(ids)  # (B, T, I)
    B, T, _ = x.shape
    H = cfg.hidden_size
    layer_input = x
    for k in range(cfg.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        outputs = []
        for t in range(T):
            xt = layer_input[:, t]
            gi = xt @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            if cfg.cell == "rnn":
                act = torch.tanh if cfg.nonlinearity == "tanh" else torch.relu
                h = act(gi + gh)
            elif cfg.cell == "gru":
                r = torch.sigmoid(gi[:, :H] + gh[:, :H])
                z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
                n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = (1 - z) * n + z * h
            else:
                g = gi + gh
                i, f = torch.sigmoid(g[:, :H]), torch.sigmoid(g[:, H : 2 * H])
                gg, o = torch.tanh(g[:, 2 * H : 3 * H]), torch.sigmoid(g[:, 3 * H :])
                c = f * c + i * gg
                h = o * torch.tanh(c)
            outputs.append(h)
        layer_input = torch.stack(outputs, dim=1)
    return layer_input @ model.head.weight.T + model.head.bias


@pytest.mark.parametrize("cell,nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")])
@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_forward_matches_the_documented_equations(cell, nonlinearity, encoding):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, nonlinearity=nonlinearity, encoding=encoding, embedding_dim=5, hidden_size=6,
                      num_layers=3)
    model = CharRNN(V, cfg).eval()
    ids = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        logits, _ = model(ids)
        expected = manual_forward(model, ids)
    assert logits.shape == (2, 9, V)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_onehot_input_size_is_the_vocabulary_and_embedding_uses_its_dim():
    onehot = CharRNN(V, ModelConfig(encoding="onehot", hidden_size=4, num_layers=1))
    emb = CharRNN(V, ModelConfig(encoding="embedding", embedding_dim=3, hidden_size=4, num_layers=1))
    assert onehot.rnn.input_size == V and onehot.embedding is None
    assert emb.rnn.input_size == 3 and emb.embedding.weight.shape == (V, 3)


def test_hidden_state_carries_context_across_calls():
    torch.manual_seed(1)
    model = CharRNN(V, ModelConfig(cell="gru", hidden_size=8, num_layers=2)).eval()
    ids = torch.randint(0, V, (1, 10))
    with torch.no_grad():
        whole, _ = model(ids)
        first, hidden = model(ids[:, :4])
        rest, _ = model(ids[:, 4:], hidden)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-6, rtol=1e-6)


def test_bidirectional_is_refused():
    with pytest.raises(ValueError, match="future"):
        CharRNN(V, ModelConfig(bidirectional=True))


def test_tied_weights_share_one_tensor_and_are_counted_once():
    model = CharRNN(V, ModelConfig(encoding="embedding", embedding_dim=8, hidden_size=8, num_layers=1,
                                   tie_weights=True))
    assert model.head.weight is model.embedding.weight
    names = [name for name, _, _ in parameter_table(model)]
    assert "head.weight" not in names and "embedding.weight" in names
    total = sum(count for _, _, count in parameter_table(model))
    assert total == sum(p.numel() for p in model.parameters())


def test_parameter_table_lists_shapes_and_counts():
    model = CharRNN(65, ModelConfig(cell="lstm", encoding="onehot", hidden_size=128, num_layers=1))
    table = {name: (shape, count) for name, shape, count in parameter_table(model)}
    assert table["rnn.weight_ih_l0"] == ((512, 65), 33_280)
    assert table["head.weight"] == ((65, 128), 8_320)
