"""Batch iterators over a split's ids: random windows, or contiguous streams for stateful truncated BPTT.
Batches are assembled with one vectorised gather."""

from __future__ import annotations

import numpy as np
import torch

from charrnn.errors import UserError


class RandomWindows:
    """Batches of windows starting at uniformly random offsets: (inputs, targets), each (B, T) int64."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if len(ids) < seq_length + 1:
            raise UserError(
                f"the training text has {len(ids)} characters, too few for train.seq_length={seq_length}; "
                f"use a longer text or set train.seq_length to at most {max(1, len(ids) - 1)}"
            )
        self.ids, self.batch_size, self.seq_length = ids, batch_size, seq_length
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.rng = np.random.default_rng(seed)
        self._window = np.arange(seq_length + 1)

    stateful = False

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Every rank draws the same global offsets and keeps its own rows: the global batch is rank-independent.
        starts = self.rng.integers(0, len(self.ids) - self.seq_length, size=self.batch_size)[self.rows]
        chunk = torch.from_numpy(np.asarray(self.ids[starts[:, None] + self._window], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class ContiguousStreams:
    """Stateful truncated BPTT: the split is cut into B parallel streams read front to back, so consecutive
    batches continue each other (carry the hidden state) and every character is seen once per epoch.

    Each epoch after the first starts the streams at a new offset into the text (drawn from the seed and the
    epoch, so the same on every rank and on resume; the text wraps around). Without it every pass feeds the same
    batches in the same order, and on a small text seen many times the val loss swings with them and ends higher:
    on 300 KB of Python in 100 s, 2.054 with the same batches each pass, 2.001 with the offset
    (docs/choosing-the-width.md)."""

    stateful = True

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        stream_len = (len(ids) - 1) // batch_size
        if stream_len < seq_length:
            need = batch_size * seq_length + 1
            raise UserError(
                f"the training text has {len(ids)} characters; stateful batching with batch_size={batch_size} "
                f"and seq_length={seq_length} needs at least {need}; lower them or use train.batching: random"
            )
        self.ids, self.batch_size, self.seq_length, self.seed = ids, batch_size, seq_length, seed
        rows = np.arange(batch_size)[rank * batch_size // world_size : (rank + 1) * batch_size // world_size]
        self._starts = rows * stream_len
        self.batches_per_epoch = stream_len // seq_length
        self._window = np.arange(seq_length + 1)
        self.position = 0  # batches taken in the current epoch
        self.epoch = 0
        self._offset = 0  # where the current epoch's streams start

    def epoch_offset(self, epoch: int) -> int:
        """Where the streams of this epoch start: 0 in the first, then anywhere in the text."""
        if epoch == 0:
            return 0
        return int(np.random.default_rng([self.seed & (2**64 - 1), epoch]).integers(len(self.ids)))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position == self.batches_per_epoch:
            self.position, self.epoch = 0, self.epoch + 1
            self._offset = self.epoch_offset(self.epoch)
        index = (self._starts[:, None] + self._offset + self.position * self.seq_length + self._window) % len(self.ids)
        self.position += 1
        chunk = torch.from_numpy(np.asarray(self.ids[index], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    @property
    def starts_new_epoch(self) -> bool:
        """True when the next batch begins the streams again (the carried hidden state must be reset)."""
        return self.position in (0, self.batches_per_epoch)

    def state_dict(self) -> dict:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])
        self._offset = self.epoch_offset(self.epoch)


def make_batcher(kind: str, ids: np.ndarray, batch_size: int, seq_length: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> RandomWindows | ContiguousStreams:
    cls = ContiguousStreams if kind == "stateful" else RandomWindows
    return cls(ids, batch_size, seq_length, seed, rank, world_size)
