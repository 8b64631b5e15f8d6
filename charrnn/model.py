"""CharRNN: input encoding (one-hot | embedding) -> nn.RNN / nn.GRU / nn.LSTM -> dropout -> Linear head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ModelConfig

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # (L, B, H), or (h, c) for an LSTM

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class CharRNN(nn.Module):
    """A character-level recurrent language model: ids (B, T) -> next-character logits (B, T, V)."""

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        if cfg.bidirectional:
            raise ValueError("a language model must not see the future: bidirectional is not supported")
        self.vocab_size, self.cfg = vocab_size, cfg
        if cfg.encoding == "embedding":
            self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim)
            input_size = cfg.embedding_dim
        else:
            self.embedding = None
            input_size = vocab_size
        extra = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.rnn = _CELLS[cfg.cell](
            input_size, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, **extra,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight  # (V, E) with E == H

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) int64 -> inputs (B, T, input_size)."""
        if self.embedding is not None:
            return self.embedding(ids)
        return F.one_hot(ids, self.vocab_size).float()

    def forward(self, ids: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """ids (B, T) -> logits (B, T, V) and the hidden state after the last step."""
        x = self.encode(ids)  # (B, T, E or V)
        out, hidden = self.rnn(x, hidden)  # (B, T, H)
        return self.head(self.dropout(out)), hidden

    def init_hidden(self, batch_size: int, device: torch.device | str = "cpu") -> Hidden:
        shape = (self.cfg.num_layers, batch_size, self.cfg.hidden_size)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros_like(h)) if self.cfg.cell == "lstm" else h


def detach_hidden(hidden: Hidden | None) -> Hidden | None:
    """Cut the graph at a batch boundary (truncated BPTT) while keeping the values."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()


def select_hidden(hidden: Hidden, rows: slice | torch.Tensor) -> Hidden:
    """The hidden state of some batch rows (dimension 1)."""
    if isinstance(hidden, tuple):
        return tuple(h[:, rows] for h in hidden)
    return hidden[:, rows]


def parameter_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, count) for each distinct parameter; tied weights are listed once."""
    return [(name, tuple(p.shape), p.numel()) for name, p in model.named_parameters()]
