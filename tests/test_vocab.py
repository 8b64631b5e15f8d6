import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.vocab import Vocab

texts = st.text(min_size=1, alphabet=st.characters(exclude_categories=("Cs",)))


def test_vocab_is_every_distinct_character_sorted():
    vocab = Vocab.from_text("hihello")
    assert vocab.chars == ["e", "h", "i", "l", "o"]
    assert vocab.encode("hello").tolist() == [1, 0, 3, 3, 4]


@given(texts)
def test_encode_decode_round_trips(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert vocab.chars == sorted(set(text))


@given(texts, st.characters(exclude_categories=("Cs",)))
def test_unknown_character_is_named(text, extra):
    vocab = Vocab.from_text(text)
    if extra in vocab:
        return
    with pytest.raises(UserError, match="not in the model's vocabulary"):
        vocab.encode(text + extra)


def test_the_json_of_a_run_folders_vocab_round_trips():
    vocab = Vocab.from_text("a b\nc\té😀")
    assert json.loads(vocab.to_json())["chars"] == vocab.chars  # what vocab.json in a run folder holds
    assert Vocab(json.loads(vocab.to_json())["chars"]) == vocab
