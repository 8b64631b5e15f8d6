"""CharRNN: input encoding (one-hot | embedding) -> nn.RNN / nn.GRU / nn.LSTM -> dropout -> Linear head."""

from __future__ import annotations

import torch
from torch import nn

from charrnn.config import ModelConfig

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # (L, B, H), or (h, c) for an LSTM

# The most floats one (characters x vocabulary) tensor of a forward call may hold (one-hot inputs, logits): 32 MB.
# Evaluation and the prime's warm-up read long texts in blocks of this size, whatever the vocabulary.
BLOCK_ELEMENTS = 1 << 23

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
        # Floats written directly: F.one_hot(...).float() builds the same tensor in int64 first, 3x the memory.
        return torch.zeros(*ids.shape, self.vocab_size, device=ids.device).scatter_(-1, ids.unsqueeze(-1), 1.0)

    def forward(self, ids: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """ids (B, T) -> logits (B, T, V) and the hidden state after the last step."""
        x = self.encode(ids)  # (B, T, E or V)
        out, hidden = self.rnn(x, hidden)  # (B, T, H)
        return self.head(self.dropout(out)), hidden

    def chars_per_block(self) -> int:
        """How many characters one forward call may take so that its (characters, V) tensors stay in BLOCK_ELEMENTS."""
        return max(1, BLOCK_ELEMENTS // self.vocab_size)

    def advance(self, ids: torch.Tensor, hidden: Hidden | None = None) -> Hidden:
        """The hidden state after reading ids (B, T), through the recurrent core only (no head), a block at a time."""
        step = max(1, min(4096, self.chars_per_block() // ids.size(0)))
        for start in range(0, ids.size(1), step):
            _, hidden = self.rnn(self.encode(ids[:, start : start + step]), hidden)
        return hidden

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


def hidden_to(hidden: Hidden | None, device: torch.device | str) -> Hidden | None:
    """A hidden state moved to a device (a checkpoint's is on the CPU)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple | list):
        return tuple(h.to(device) for h in hidden)
    return hidden.to(device)


def select_hidden(hidden: Hidden, rows: slice | torch.Tensor) -> Hidden:
    """The hidden state of some batch rows (dimension 1)."""
    if isinstance(hidden, tuple):
        return tuple(h[:, rows] for h in hidden)
    return hidden[:, rows]


def expand_hidden(hidden: Hidden, batch_size: int) -> Hidden:
    """A batch-1 hidden state repeated for batch_size rows (a view: no copy)."""
    if isinstance(hidden, tuple):
        return tuple(h.expand(-1, batch_size, -1) for h in hidden)
    return hidden.expand(-1, batch_size, -1)


def parameter_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, count) for each distinct parameter; tied weights are listed once."""
    return [(name, tuple(p.shape), p.numel()) for name, p in model.named_parameters()]
