"""What the model computes per character, recorded: `record` runs the model over a text once, with the
checkpoint's own weights, through the sampler's one-step path (`stepper.Stepper`, equal to nn.RNN/GRU/LSTM to
float tolerance), and keeps every layer's h (and c for an LSTM) and gate activations at every character,
with the bits and top-5 guesses of each."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.stepper import GATES, make_stepper
from charrnn.vocab import Vocab

MAX_LENGTH = 10_000  # characters on one page: a 2x256 LSTM page grows by about 1.4 MB per 1,000


DEFAULT_LENGTH = 2_000


WARMUP_CHARS = 10_000  # at most this much of the text before the shown part warms the hidden state


TOP_K = 5


def window(ids: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The shown part ids[start:start + length] and the text before it that warms the hidden state
    (at most WARMUP_CHARS); an empty or over-long request is a UserError."""
    _check_window(len(ids), start, length)
    return np.asarray(ids[start : start + length]), np.asarray(ids[max(0, start - WARMUP_CHARS) : start])


def encode_window(vocab: Vocab, text: str, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`window` of a text, encoding only the part used (a character outside the vocabulary is named)."""
    _check_window(len(text), start, length)
    before = max(0, start - WARMUP_CHARS)
    ids = vocab.encode(text[before : start + length])
    return ids[start - before :], ids[: start - before]


def _check_window(n: int, start: int, length: int) -> None:
    check_length(length)
    if n == 0:
        raise UserError("the text is empty; give it at least one character")
    if start >= n:
        raise UserError(f"--start {start:,} is past the end of the text ({n:,} characters); pass a smaller --start")


def shown_length(text: str | None, start: int, length: int | None) -> int:
    """How many characters a page shows: --length (default 2,000), or for a --text all of it after --start;
    more than MAX_LENGTH, an empty text or a text longer than an explicit --length is a UserError."""
    check_length(length or DEFAULT_LENGTH)
    if text is None:
        return length or DEFAULT_LENGTH
    if text == "":
        raise UserError("--text is empty; pass at least one character")
    shown = len(text) - start  # the whole text is shown: a longer one than the page holds is refused, not cut
    if length is not None and shown > length:
        raise UserError(f"--text has {shown:,} characters after --start but --length is {length:,}; "
                        "pass a larger --length or a shorter text")
    if shown > MAX_LENGTH:
        raise UserError(f"--text has {shown:,} characters after --start, above the limit of {MAX_LENGTH:,} "
                        "per page; pass a shorter text, or a file with --file and --start/--length")
    return length or max(DEFAULT_LENGTH, shown)


def check_length(length: int) -> None:
    """Refuse a page longer than MAX_LENGTH characters, naming the limit."""
    if length > MAX_LENGTH:
        raise UserError(f"--length {length:,} is above the limit of {MAX_LENGTH:,} characters per page; "
                        f"pass --length {MAX_LENGTH} or less (and --start to move through a longer text)")


def describe_model(model: CharRNN) -> str:
    """'lstm 2x256, embedding 256 (tied)': the shape of the model in a few words."""
    cfg = model.cfg
    cell = f"rnn ({cfg.nonlinearity})" if cfg.cell == "rnn" else cfg.cell
    encoding = f"embedding {cfg.embedding_dim}" if cfg.encoding == "embedding" else "one-hot"
    return f"{cell} {cfg.num_layers}x{cfg.hidden_size}, {encoding}{' (tied)' if cfg.tie_weights else ''}"


@dataclass
class Recording:
    """Per character t of the shown text: the prediction made for it and the states after reading it."""

    ids: np.ndarray  # (T,) the shown text
    bits: np.ndarray  # (T,) -log2 p(ids[t] | what came before); nan where nothing came before
    top_ids: np.ndarray  # (T, K) the K likeliest characters for position t, likeliest first
    top_probs: np.ndarray  # (T, K)
    h: np.ndarray  # (L, T, H) hidden state after reading ids[t]
    c: np.ndarray | None  # (L, T, H) LSTM cell state after reading ids[t]
    gates: np.ndarray | None  # (L, G, T, H) gate activations, in stepper.GATES[cell] order
    gate_names: tuple[str, ...] = field(default=())


@torch.no_grad()
def record(model: CharRNN, ids: np.ndarray, warmup: np.ndarray | None = None) -> Recording:
    """Run the model over ids (after warming the hidden state on `warmup`) and record everything per character."""
    model.eval()
    cfg = model.cfg
    T, L, H = len(ids), cfg.num_layers, cfg.hidden_size
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    step = make_stepper(model)
    hidden, first_logits = None, None
    if warmup is not None and len(warmup):
        logits, hidden = model(torch.as_tensor(np.asarray(warmup, dtype=np.int64))[None, :])
        first_logits = logits[0, -1]
    state = step.start(hidden, 1, "cpu")
    names = GATES[cfg.cell]
    h_out = torch.empty(L, T, H)
    c_out = torch.empty(L, T, H) if cfg.cell == "lstm" else None
    g_out = torch.empty(L, T, len(names) * H) if names else None
    logits_out = torch.empty(T, model.vocab_size)
    for t in range(T):
        gates: list = []
        logits, state = step(x[t : t + 1], state, gates)
        logits_out[t] = logits[0]
        for k in range(L):
            if c_out is not None:
                h_out[k, t], c_out[k, t] = state[k][0][0], state[k][1][0]
            else:
                h_out[k, t] = state[k][0]
            if g_out is not None:
                g_out[k, t] = gates[k][0]
    # The prediction for character t was made after reading t - 1 (or the warm-up, for t = 0).
    predictions = torch.cat([first_logits[None] if first_logits is not None else torch.zeros(1, model.vocab_size),
                             logits_out[:-1]])
    logp = torch.log_softmax(predictions.float(), dim=-1)
    bits = (-logp.gather(1, x[:, None])[:, 0] / math.log(2)).numpy().astype(np.float64)
    k = min(TOP_K, model.vocab_size)
    top_logp, top_ids = logp.topk(k, dim=-1)
    top_probs = top_logp.exp().numpy()
    top_ids = top_ids.numpy()
    if first_logits is None:
        bits[0] = math.nan
        top_probs[0] = math.nan
        top_ids[0] = -1
    gates_arr = None
    if g_out is not None:
        gates_arr = g_out.view(L, T, len(names), H).permute(0, 2, 1, 3).numpy()
    return Recording(ids=np.asarray(ids), bits=bits, top_ids=top_ids, top_probs=top_probs, h=h_out.numpy(),
                     c=None if c_out is None else c_out.numpy(), gates=gates_arr, gate_names=names)


def mean_bits(rec: Recording) -> float:
    """Mean bits per character over the characters that have a prediction."""
    scored = rec.bits[np.isfinite(rec.bits)]
    return float(scored.mean()) if len(scored) else math.nan
