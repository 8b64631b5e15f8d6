"""A trained network's weights laid out for a one-step sampler outside torch (the browser page, the ONNX graph).

The layout follows charrnn.stepper: the first layer's input projection is folded into a table with one row per
character (when that is no larger than the embedding and the projection it replaces), the input-side biases are
summed where the cell equations allow (RNN, LSTM; a GRU keeps b_hh apart for its reset gate), and every matrix
keeps PyTorch's (out, in) orientation and gate order: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charrnn.model import CharRNN


@dataclass
class StepWeights:
    """float32 arrays of one model, by name: first layer `table` (V, G*H), or `emb` (V, E) + `w_ih0` (G*H, E) +
    `b_in0`; per layer k: `w_hh{k}` (G*H, H), `b_hh{k}` (GRU only), and for k > 0 `w_ih{k}` (G*H, H) + `b_in{k}`;
    the head `head_w` (V, H) and `head_b` (V,). A tied head whose matrix is `emb` is stored once, as `emb`."""

    cell: str
    nonlinearity: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    arrays: dict[str, np.ndarray]

    @property
    def has_table(self) -> bool:
        return "table" in self.arrays

    @property
    def head_name(self) -> str:
        """The array that holds the head's matrix (V, H)."""
        return "head_w" if "head_w" in self.arrays else "emb"

    @property
    def state_names(self) -> list[str]:
        """The recurrent state tensors, each (num_layers, batch, hidden): h, and c for an LSTM."""
        return ["h", "c"] if self.cell == "lstm" else ["h"]


def step_weights(net: CharRNN) -> StepWeights:
    """The weights of `net` (any device or dtype) as float32 numpy arrays in the one-step layout."""
    cfg, rnn = net.cfg, net.rnn
    arrays: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for k in range(cfg.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}").float().cpu(), getattr(rnn, f"weight_hh_l{k}").float().cpu()
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}").float().cpu(), getattr(rnn, f"bias_hh_l{k}").float().cpu()
            b_in = b_ih if cfg.cell == "gru" else b_ih + b_hh
            arrays[f"w_hh{k}"] = w_hh
            if cfg.cell == "gru":
                arrays[f"b_hh{k}"] = b_hh
            if k > 0:
                arrays[f"w_ih{k}"], arrays[f"b_in{k}"] = w_ih, b_in
            elif net.embedding is None:  # one-hot: character x picks column x of W_ih
                arrays["table"] = w_ih.t() + b_in
            else:
                emb = net.embedding.weight.float().cpu()  # (V, E)
                if emb.shape[0] <= emb.shape[1]:  # a row per character is no larger than what it replaces
                    arrays["table"] = torch.addmm(b_in, emb, w_ih.t())  # (V, G*H), as the stepper computes it
                else:
                    arrays["emb"], arrays["w_ih0"], arrays["b_in0"] = emb, w_ih, b_in
        if not (cfg.tie_weights and "emb" in arrays):
            arrays["head_w"] = net.head.weight.float().cpu()
        arrays["head_b"] = net.head.bias.float().cpu()
    out = {name: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32) for name, t in arrays.items()}
    return StepWeights(cell=cfg.cell, nonlinearity=cfg.nonlinearity if cfg.cell == "rnn" else "tanh",
                       num_layers=cfg.num_layers, hidden_size=cfg.hidden_size, vocab_size=net.vocab_size,
                       arrays=out)
