"""Which units follow simple properties of the text (in a string, inside brackets, position in the line, ...)
and how often each gate saturates."""

from __future__ import annotations

import math

import numpy as np

from charrnn.inspection.recording import Recording

UNITS_PER_PROPERTY = 3


SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9


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
