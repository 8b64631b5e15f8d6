"""What the model computes per character: bits, top-5 guesses, hidden and cell states, gates -> one page.

`record` runs the model over a text once, with the checkpoint's own weights, through the sampler's
one-step path (`stepper.Stepper`, equal to nn.RNN/GRU/LSTM to float tolerance), and keeps every layer's
h (and c for an LSTM) and gate activations at every character. `analyse` turns that into what a person
studying the model looks at: the cost of each character, the units that follow simple properties of the
text, how often each gate saturates. `render_page` writes it as one self-contained HTML file.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.stepper import GATES, make_stepper
from charrnn.tracking import visible_char
from charrnn.vocab import Vocab

MAX_LENGTH = 10_000  # characters on one page: a 2x256 LSTM page grows by about 1.4 MB per 1,000
DEFAULT_LENGTH = 2_000
WARMUP_CHARS = 10_000  # at most this much of the text before the shown part warms the hidden state
TOP_K = 5
UNITS_PER_PROPERTY = 3
SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9


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


# ---- properties of the text itself ------------------------------------------------------------------------

PROPERTIES = ("inside a string", "inside a comment", "bracket depth", "position in line", "indentation",
              "start of a word", "upper case")
_STRING_PREFIXES = {"r", "b", "f", "u", "rb", "br", "fr", "rf"}
_OPEN, _CLOSE = "([{", ")]}"


def text_properties(text: str) -> dict[str, np.ndarray]:
    """Simple properties of each character, as the state after reading it (Python-aware, prose-tolerant).

    A string opens at ' or " (or a triple quote) and runs to its closing quote; an apostrophe inside a word
    (don't, 'tis after a letter) opens nothing; a single-quoted string ends at the line's end. A comment
    runs from # (outside a string) to the end of the line. Brackets count outside strings and comments.
    """
    n = len(text)
    props = {name: np.zeros(n) for name in PROPERTIES}
    quote = None  # the delimiter of the open string: ', ", ''' or """
    escaped = comment = False
    depth = column = indent = 0
    leading = True  # still in the line's leading whitespace
    closing = 0  # quote characters seen in a row inside a triple-quoted string
    i = 0
    while i < n:
        ch = text[i]
        opened = 0  # characters of an opening delimiter (1 or 3) that start at i
        if quote is not None:
            if escaped:
                escaped = False
                closing = 0
            elif ch == "\\":
                escaped = True
                closing = 0
            elif ch == quote[0]:
                closing += 1
                if closing == len(quote):
                    quote, closing = None, 0
            elif ch == "\n" and len(quote) == 1:
                quote = None  # an unterminated one-line string (or prose): it ends with the line
            else:
                closing = 0
        elif comment:
            if ch == "\n":
                comment = False
        elif ch == "#":
            comment = True
        elif ch in "'\"":
            word_start = i
            while word_start > 0 and (text[word_start - 1].isalnum() or text[word_start - 1] == "_"):
                word_start -= 1
            word = text[word_start:i]
            if ch == "'" and word and word.lower() not in _STRING_PREFIXES:
                pass  # an apostrophe inside or after a word
            else:
                opened = 3 if text.startswith(ch * 3, i) else 1
                quote = ch * opened
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        # position in the line and indentation
        if ch == "\n":
            value_col, column, leading, indent_now, indent = column, 0, True, indent, 0
        else:
            if leading and ch in " \t":
                indent = indent + 1 if ch == " " else (indent // 8 + 1) * 8
            else:
                leading = False
            value_col, indent_now = column, indent
            column += 1
        for j in range(opened or 1):  # an opening triple quote: all three characters are inside
            if i + j >= n:
                break
            props["inside a string"][i + j] = quote is not None
            props["inside a comment"][i + j] = comment
            props["bracket depth"][i + j] = depth
            props["position in line"][i + j] = value_col + j
            props["indentation"][i + j] = indent_now
        if opened == 3:
            column += 2
        prev = text[i - 1] if i else "\n"
        props["start of a word"][i] = ch.isalpha() and not (prev.isalnum() or prev == "_")
        props["upper case"][i] = ch.isupper()
        i += opened or 1
    return props


def _units(rec: Recording) -> tuple[np.ndarray, list[str]]:
    """Every unit's activation over the text as columns (T, U), with names: L1:37 is h, L1:c37 is tanh(c)."""
    L, T, H = rec.h.shape
    columns, names = [], []
    for k in range(L):
        columns.append(rec.h[k])
        names += [f"L{k + 1}:{u}" for u in range(H)]
        if rec.c is not None:
            columns.append(np.tanh(rec.c[k]))
            names += [f"L{k + 1}:c{u}" for u in range(H)]
    return np.concatenate(columns, axis=1), names


def rank_units(rec: Recording, text: str, top: int = UNITS_PER_PROPERTY) -> dict[str, list[dict]]:
    """For each text property, the units whose activation correlates most (absolute Pearson r) with it."""
    acts, names = _units(rec)
    a = acts - acts.mean(0)
    a_norm = np.sqrt((a * a).sum(0))
    ranked = {}
    for prop, values in text_properties(text).items():
        p = values - values.mean()
        p_norm = math.sqrt(float(p @ p))
        if p_norm == 0:
            continue  # the property never changes in this text: nothing to correlate with
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (p @ a) / (a_norm * p_norm)
        r = np.where(np.isfinite(r), r, 0.0)
        best = np.argsort(-np.abs(r), kind="stable")[:top]
        ranked[prop] = [{"unit": names[u], "r": round(float(r[u]), 4)} for u in best]
    return ranked


def saturation(rec: Recording) -> dict[str, list[list[list[float]]]]:
    """Per gate, per layer, per unit: [fraction of steps below 0.1, fraction above 0.9]."""
    if rec.gates is None:
        return {}
    low = (rec.gates < SATURATED_LOW).mean(axis=2)  # (L, G, H)
    high = (rec.gates > SATURATED_HIGH).mean(axis=2)
    return {name: [np.round(np.stack([low[k, g], high[k, g]], axis=1), 4).tolist() for k in range(low.shape[0])]
            for g, name in enumerate(rec.gate_names)}


def mean_bits(rec: Recording) -> float:
    """Mean bits per character over the characters that have a prediction."""
    scored = rec.bits[np.isfinite(rec.bits)]
    return float(scored.mean()) if len(scored) else math.nan


# ---- output ---------------------------------------------------------------------------------------------------

def summary(rec: Recording, text: str, chars: list[str], info: dict) -> dict:
    """The data for scripts (`charrnn inspect --json`): text, per-character bits, top-5, ranked units."""
    top5 = []
    for t in range(len(text)):
        if rec.top_ids[t, 0] < 0:
            top5.append([])
        else:
            top5.append([[chars[i], round(float(p), 6)] for i, p in zip(rec.top_ids[t], rec.top_probs[t],
                                                                          strict=True)])
    return {**info, "text": text, "bpc": _finite_or_none(mean_bits(rec)),
            "chars_scored": int(np.isfinite(rec.bits).sum()),
            "bits": [round(float(b), 5) if math.isfinite(b) else None for b in rec.bits],
            "top5": top5, "units": rank_units(rec, text), "saturation": saturation(rec)}


def _quantize(values: np.ndarray) -> bytes:
    """Activations (T, H) in [-1, 1] as one byte each (0 = -1, 255 = +1), unit-major (H, T)."""
    q = np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(q.T).tobytes()


def page_data(rec: Recording, text: str, chars: list[str], info: dict) -> dict:
    """Everything the page's script needs, compact: activations 8-bit and deflated, probabilities in
    1/10,000 rounded down (so a top-5 never sums above 1)."""
    L, T, H = rec.h.shape
    kinds = {"h": rec.h} if rec.c is None else {"h": rec.h, "c": np.tanh(rec.c)}
    blocks = b"".join(_quantize(kinds[kind][k]) for kind in kinds for k in range(L))  # kind, layer, unit, char
    probs = np.where(np.isfinite(rec.top_probs), np.floor(np.nan_to_num(rec.top_probs) * 10_000), -1)
    return {
        **info,
        "text": text,
        "ids": rec.ids.astype(int).tolist(),
        "labels": [visible_char(c) for c in chars],
        "bits": [round(float(b), 3) if math.isfinite(b) else None for b in rec.bits],
        "bpc": _finite_or_none(mean_bits(rec)),
        "chars_scored": int(np.isfinite(rec.bits).sum()),
        "top_ids": rec.top_ids.astype(int).ravel().tolist(),
        "top_p": probs.astype(int).ravel().tolist(),
        "k": rec.top_ids.shape[1],
        "layers": L,
        "hidden": H,
        "kinds": list(kinds),
        "states": base64.b64encode(zlib.compress(blocks, 6)).decode("ascii"),  # zlib: the page inflates it
        "units": rank_units(rec, text),
        "saturation": saturation(rec),
    }


def render_page(data: dict) -> str:
    """One self-contained HTML page (inline CSS and JS, no network request) showing `page_data`."""
    from charrnn.inspect_page import TEMPLATE

    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    blob = blob.replace("</", "<\\/").replace("<!--", "<\\!--")  # stays inside its <script> element
    title = f"charrnn inspect: {data.get('run', '')}"
    return TEMPLATE.replace("__TITLE__", _escape_html(title)).replace("__DATA__", blob)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _escape_html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
