"""Loss, bits per character, perplexity and accuracy of a model over a text.

One function serves both the validation during training and `charrnn eval`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.device import autocast
from charrnn.model import CharRNN, Hidden, select_hidden


@dataclass
class Metrics:
    loss: float  # mean cross-entropy, nats per character
    bpc: float
    perplexity: float
    accuracy: float
    chars: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_sums(cls, loss_sum: float, correct: int, chars: int) -> Metrics:
        loss = loss_sum / chars if chars else float("nan")
        return cls(loss=loss, bpc=loss / math.log(2), perplexity=math.exp(min(loss, 700.0)),
                   accuracy=correct / chars if chars else float("nan"), chars=chars)


@torch.no_grad()
def evaluate(model: CharRNN, ids: np.ndarray, *, batch_size: int = 64, chunk_length: int = 256,
             device: torch.device | str = "cpu", precision: str = "fp32", max_chars: int | None = None) -> Metrics:
    """Score every next-character prediction in ids (all but the first character).

    The text is cut into `batch_size` contiguous streams read in chunks with the hidden state carried,
    so each prediction sees its preceding context; the remainder continues the last stream. With max_chars
    below that, only the first max_chars / batch_size predictions of each stream are scored: a sample spread
    evenly over the whole text, the same one every time.
    """
    n = len(ids) - 1
    if n < 1:
        return Metrics.from_sums(0.0, 0, 0)
    was_training = model.training
    model.eval()
    streams = max(1, min(batch_size, n // chunk_length))
    spacing = stream_len = n // streams
    sampled = max_chars is not None and max_chars < n
    if sampled:
        stream_len = max(1, max_chars // streams)
        n = stream_len * streams
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no wait per block
    correct = torch.zeros((), dtype=torch.int64, device=device)

    def score(block: torch.Tensor, hidden: Hidden | None) -> Hidden:
        nonlocal loss_sum, correct
        block = block.to(device)
        with autocast(device, precision):
            logits, hidden = model(block[:, :-1], hidden)
        logits = logits.float()
        targets = block[:, 1:]
        loss_sum += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        correct += (logits.argmax(-1) == targets).sum()
        return hidden

    def gather(index: np.ndarray) -> torch.Tensor:
        # One block at a time from the (memory-mapped) ids: a split larger than RAM is never loaded whole.
        return torch.from_numpy(np.asarray(ids[index], dtype=np.int64))

    starts = np.arange(streams)[:, None] * spacing  # (S, 1)
    chunk_length = max(1, min(chunk_length, model.chars_per_block() // streams))  # a large vocabulary reads less
    hidden = None
    for start in range(0, stream_len, chunk_length):
        width = min(chunk_length, stream_len - start)
        hidden = score(gather(starts + start + np.arange(width + 1)), hidden)  # (S, width + 1)
    if not sampled and n + 1 - streams * stream_len > 1:  # the remainder continues the last stream
        rest = gather(np.arange(streams * stream_len, n + 1))[None, :]
        score(rest, select_hidden(hidden, slice(streams - 1, streams)))
    if was_training:
        model.train()
    return Metrics.from_sums(loss_sum.item(), int(correct.item()), n)
