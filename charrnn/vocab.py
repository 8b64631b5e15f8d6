"""Character vocabulary: built from text, encodes and decodes, saved as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from charrnn.errors import UserError


def codepoints(text: str) -> np.ndarray:
    """The Unicode code points of text as a uint32 array (vectorised, no Python loop per character)."""
    if not text:
        return np.zeros(0, dtype=np.uint32)
    # numpy stores a str scalar as UCS-4: copying it is several times faster than text.encode("utf-32").
    return np.array(text).reshape(1).view(np.uint32)


def describe_char(ch: str) -> str:
    """A character as a user can read it in an error message: 'x', '\\n', U+00A0."""
    if ch.isprintable() and not ch.isspace():
        return repr(ch)
    if ch in "\n\t\r ":
        return repr(ch)
    return f"U+{ord(ch):04X}"


class Vocab:
    """Maps each distinct character to an index, in sorted (code point) order."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("a vocabulary holds single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("a vocabulary holds each character once")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._sorted_order = np.argsort(self._codes, kind="stable")

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> Vocab:
        if isinstance(text, str):
            return cls([chr(c) for c in np.unique(codepoints(text))])
        return cls(sorted(set().union(*map(set, text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def encode(self, text: str) -> np.ndarray:
        """Text -> int64 ids; a character outside the vocabulary is a UserError naming it."""
        cps = codepoints(text)
        sorted_codes = self._codes[self._sorted_order]
        pos = np.searchsorted(sorted_codes, cps)
        pos_clipped = np.minimum(pos, len(sorted_codes) - 1)
        known = sorted_codes[pos_clipped] == cps
        if not known.all():
            bad = chr(int(cps[np.argmin(known)]))
            raise UserError(
                f"character {describe_char(bad)} is not in the model's vocabulary of {len(self)} characters; "
                "use only characters from the training text"
            )
        return self._sorted_order[pos_clipped].astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars}, ensure_ascii=False)


# Characters that would be invisible (or break the TSV metadata) in TensorBoard's projector.
_VISIBLE = {"\n": "\\n", "\t": "\\t", " ": "␣", "\r": "\\r"}


def visible_char(ch: str) -> str:
    """A label that shows the character, including whitespace and control characters."""
    if ch in _VISIBLE:
        return _VISIBLE[ch]
    return ch if ch.isprintable() else f"U+{ord(ch):04X}"
