"""The model's one-step path: advance the hidden state by one character at O(1) cost.

Calling nn.LSTM on a length-1 sequence pays a large fixed cost per call. Generation is bound by that
overhead, not by arithmetic, so the stepper replays the cell equations (as documented for nn.RNN,
nn.GRU, nn.LSTM) with the weights laid out once for matrix-vector products, and folds the first
layer's input projection into a lookup table (one row per character). It matches the full-sequence
forward pass to float tolerance (tests/test_stepper.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.model import CharRNN, Hidden


def _lstm_gate_order(hidden_size: int) -> torch.Tensor:
    """Row permutation from PyTorch's LSTM gate order (i, f, g, o) to (i, f, o, g): one sigmoid then covers
    three contiguous gates and one tanh the last."""
    i, f, g, o = torch.arange(4 * hidden_size).chunk(4)
    return torch.cat([i, f, o, g])


class _Layer:
    def __init__(self, w_ih: torch.Tensor, w_hh: torch.Tensor, b_in: torch.Tensor, b_hh: torch.Tensor,
                 inputs: torch.Tensor | None, rows: torch.Tensor | None):
        # b_in is the bias added on the input side: b_ih, plus b_hh for RNN and LSTM (outside any gate product).
        if rows is not None:  # reorder the gate rows (LSTM)
            w_ih, w_hh, b_in, b_hh = w_ih[rows], w_hh[rows], b_in[rows], b_hh[rows]
        self.w_hh_t = w_hh.t().contiguous()  # (H, G*H)
        self.b_hh = b_hh
        self.w_ih_t = w_ih.t().contiguous()  # (I, G*H)
        self.b_in = b_in
        # First layer: W_ih x + b_in for every character x, one row each (V, G*H).
        self.table = torch.addmm(b_in, inputs, self.w_ih_t) if inputs is not None else None


# The gates a cell computes, in the order Stepper records them (see Stepper.__call__'s `gates`).
GATES = {"lstm": ("input", "forget", "output"), "gru": ("reset", "update"), "rnn": ()}


class Stepper:
    """step(x (N,) int64, state) -> (logits (N, V), state); state is one tensor or (h, c) per layer."""

    def __init__(self, model: CharRNN):
        cfg = model.cfg
        self.cell, self.num_layers, self.hidden_size = cfg.cell, cfg.num_layers, cfg.hidden_size
        self.relu = cfg.cell == "rnn" and cfg.nonlinearity == "relu"
        rnn = model.rnn
        with torch.no_grad():
            if model.embedding is not None:
                inputs = model.embedding.weight  # (V, E): the encoded form of every character
            else:
                inputs = torch.eye(model.vocab_size, device=rnn.weight_ih_l0.device)
            self.layers = []
            for k in range(cfg.num_layers):
                w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
                b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
                b_in = b_ih if cfg.cell == "gru" else b_ih + b_hh
                rows = _lstm_gate_order(cfg.hidden_size) if cfg.cell == "lstm" else None
                self.layers.append(_Layer(w_ih, w_hh, b_in, b_hh, inputs if k == 0 else None, rows))
            self.head_w_t = model.head.weight.t().contiguous()  # (H, V)
            self.head_b = model.head.bias

    def start(self, hidden: Hidden | None, batch_size: int, device: torch.device | str) -> list:
        """Turn nn-style hidden state (L, N, H) (or None for zeros) into the stepper's per-layer state."""
        if hidden is None:
            zeros = torch.zeros(batch_size, self.hidden_size, device=device)
            return [(zeros, zeros) if self.cell == "lstm" else zeros for _ in range(self.num_layers)]
        if self.cell == "lstm":
            h, c = hidden
            return [(h[k].contiguous(), c[k].contiguous()) for k in range(self.num_layers)]
        return [hidden[k].contiguous() for k in range(self.num_layers)]

    def to_hidden(self, state: list) -> Hidden:
        """The stepper's state back in nn.RNN/GRU/LSTM layout (L, N, H)."""
        if self.cell == "lstm":
            return torch.stack([h for h, _ in state]), torch.stack([c for _, c in state])
        return torch.stack(state)

    def __call__(self, x: torch.Tensor, state: list, gates: list | None = None) -> tuple[torch.Tensor, list]:
        """One character for each of N streams; a `gates` list receives, per layer, the gate activations
        (N, len(GATES[cell]) * H) in GATES order (nothing for a plain RNN)."""
        new_state = []
        below = None  # output of the layer below, (N, H)
        for k, layer in enumerate(self.layers):
            if k == 0:
                gi = layer.table.index_select(0, x)  # (N, G*H)
            else:
                gi = torch.addmm(layer.b_in, below, layer.w_ih_t)
            if self.cell == "lstm":
                h, c = state[k]
                pre = torch.addmm(gi, h, layer.w_hh_t)  # (N, 4H) in (i, f, o, g) order
                H = self.hidden_size
                ifo = torch.sigmoid(pre[:, : 3 * H])
                g = torch.tanh(pre[:, 3 * H :])
                c = torch.addcmul(ifo[:, H : 2 * H] * c, ifo[:, :H], g)  # f * c + i * g
                h = ifo[:, 2 * H :] * torch.tanh(c)  # o * tanh(c)
                new_state.append((h, c))
                if gates is not None:
                    gates.append(ifo)
            elif self.cell == "gru":
                h = state[k]
                gh = torch.addmm(layer.b_hh, h, layer.w_hh_t)  # (N, 3H)
                i_r, i_z, i_n = gi.chunk(3, dim=1)
                h_r, h_z, h_n = gh.chunk(3, dim=1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = n + z * (h - n)  # (1 - z) * n + z * h
                new_state.append(h)
                if gates is not None:
                    gates.append(torch.cat([r, z], dim=1))
            else:
                h = state[k]
                pre = torch.addmm(gi, h, layer.w_hh_t)
                h = F.relu(pre) if self.relu else torch.tanh(pre)
                new_state.append(h)
            below = h
        logits = torch.addmm(self.head_b, below, self.head_w_t)  # (N, V)
        return logits, new_state


def make_stepper(model: CharRNN) -> Stepper:
    """A one-step function over the model's current weights (rebuild it after the weights change)."""
    return Stepper(model)
