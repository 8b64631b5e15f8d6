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
    scan = _Scanner(text)
    i = 0
    while i < n:
        ch = text[i]
        opened = scan.in_string(ch) if scan.quote is not None else scan.in_code(i, ch)  # 1 or 3: a string opens
        column, indent = scan.position(ch)
        for j in range(min(opened or 1, n - i)):  # an opening triple quote: all three characters are inside
            props["inside a string"][i + j] = scan.quote is not None
            props["inside a comment"][i + j] = scan.comment
            props["bracket depth"][i + j] = scan.depth
            props["position in line"][i + j] = column + j
            props["indentation"][i + j] = indent
        if opened == 3:
            scan.column += 2
        prev = text[i - 1] if i else "\n"
        props["start of a word"][i] = ch.isalpha() and not (prev.isalnum() or prev == "_")
        props["upper case"][i] = ch.isupper()
        i += opened or 1
    return props


class _Scanner:
    """What text_properties tracks from one character to the next: the open string's delimiter (', ", ''' or
    \"\"\"), a comment, the bracket depth, the column and the line's indentation."""

    def __init__(self, text: str):
        self.text = text
        self.quote: str | None = None
        self.escaped = self.comment = False
        self.depth = self.column = self.indent = 0
        self.leading = True  # still in the line's leading whitespace
        self.closing = 0  # quote characters seen in a row inside a triple-quoted string

    def in_string(self, ch: str) -> int:
        """A character inside a string: an escape, the closing quote, or a line end that ends a one-line
        string (or prose). Opens nothing: returns 0."""
        if self.escaped:
            self.escaped, self.closing = False, 0
        elif ch == "\\":
            self.escaped, self.closing = True, 0
        elif ch == self.quote[0]:
            self.closing += 1
            if self.closing == len(self.quote):
                self.quote, self.closing = None, 0
        elif ch == "\n" and len(self.quote) == 1:
            self.quote = None  # an unterminated one-line string (or prose): it ends with the line
        else:
            self.closing = 0
        return 0

    def in_code(self, i: int, ch: str) -> int:
        """A character outside strings: comments, brackets, and quotes, which open a string (returns the
        length of the opening delimiter, 1 or 3) unless they are an apostrophe inside or after a word."""
        if self.comment:
            self.comment = ch != "\n"
        elif ch == "#":
            self.comment = True
        elif ch in "'\"":
            start = i
            while start > 0 and (self.text[start - 1].isalnum() or self.text[start - 1] == "_"):
                start -= 1
            word = self.text[start:i]
            if not (ch == "'" and word and word.lower() not in _STRING_PREFIXES):
                opened = 3 if self.text.startswith(ch * 3, i) else 1
                self.quote = ch * opened
                return opened
        elif ch in _OPEN:
            self.depth += 1
        elif ch in _CLOSE:
            self.depth = max(0, self.depth - 1)
        return 0

    def position(self, ch: str) -> tuple[int, int]:
        """The character's column and the line's indentation so far; then move past it."""
        if ch == "\n":
            column, indent = self.column, self.indent
            self.column, self.leading, self.indent = 0, True, 0
            return column, indent
        if self.leading and ch in " \t":
            self.indent = self.indent + 1 if ch == " " else (self.indent // 8 + 1) * 8
        else:
            self.leading = False
        self.column += 1
        return self.column - 1, self.indent


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
