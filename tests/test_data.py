"""The corpus layer: chunked UTF-8 reading, one-pass encoding, id dtypes, the cache and the batchers."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data import cache as corpus_cache
from charrnn.data.batches import ContiguousStreams, RandomWindows
from charrnn.data.cache import load_corpus
from charrnn.data.encode import encode_files, id_dtype
from charrnn.data.files import shuffled_order
from charrnn.data.text import iter_text_chunks, read_text
from charrnn.errors import UserError
from charrnn.vocab import Vocab, codepoints

# Text without surrogates (which UTF-8 cannot hold); NUL and astral characters included on purpose.
# A leading U+FEFF is a byte-order mark, which the reader drops: test_byte_order_mark covers it.
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda t: not t.startswith("\ufeff"))


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# -- chunked reader --------------------------------------------------------------------------------------


@given(text=unicode_text, chunk_bytes=st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_chunks_never_split_a_character_and_cover_the_file(text, chunk_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "t.txt", text)
        chunks = list(iter_text_chunks(path, chunk_bytes))
    assert "".join(t for _, _, t in chunks) == text
    ends = [0] + [end for _, end, _ in chunks]
    assert [start for start, _, _ in chunks] == ends[:-1]  # contiguous byte ranges
    assert all(len(t.encode("utf-8")) == end - start for start, end, t in chunks)
    assert ends[-1] == len(text.encode("utf-8"))


def test_multibyte_character_split_across_the_chunk_boundary(tmp_path):
    # "€" is 3 bytes, "😀" 4: the first 4-byte read ends one byte into "€", the second one byte into "😀".
    text = "abc€d😀e"
    path = write(tmp_path / "t.txt", text)
    assert [t for _, _, t in iter_text_chunks(path, 4)] == ["abc", "€d", "😀e"]
    corpus = load_corpus(path, tmp_path / "cache", chunk_bytes=4)
    assert corpus.vocab.decode(corpus.ids) == text


@pytest.mark.parametrize(("content", "chunk_bytes", "message"), [
    (b"abc\xffdef", 1 << 24, "invalid byte 0xff at byte offset 3"),
    (b"abcdefg\x80", 4, "invalid byte 0x80 at byte offset 7"),          # lone continuation byte, second chunk
    (b"a\xe2Xb", 2, "invalid byte 0xe2 at byte offset 1"),              # a cut character that never completes
    (b"ab\xe2\x82", 1 << 24, "ends inside a character at byte offset 2"),  # file ends mid-character
    (b"ab\xe2\x82", 3, "ends inside a character at byte offset 2"),
])
def test_invalid_utf8_is_reported_with_its_byte_offset(tmp_path, content, chunk_bytes, message):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(UserError, match=message):
        load_corpus(path, tmp_path / "cache", chunk_bytes=chunk_bytes)
    assert not any((tmp_path / "cache").rglob("meta.json"))  # nothing half-done is cached


def test_missing_and_empty_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="empty"):
        load_corpus(write(tmp_path / "empty.txt", b""), tmp_path / "cache")


def test_codepoints_match_ord_including_nul_and_astral():
    text = "a\x00\U0001f600é\x00"
    assert codepoints(text).tolist() == [ord(c) for c in text]
    assert codepoints("").tolist() == []


# -- encoding, dtypes and the cache ----------------------------------------------------------------------


@given(text=unicode_text, chunk_bytes=st.integers(1, 16))
@settings(max_examples=60, deadline=None)
def test_encode_decode_round_trip(text, chunk_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "t.txt", text)
        corpus = load_corpus(path, Path(tmp) / "cache", chunk_bytes=chunk_bytes)
        assert corpus.vocab == Vocab.from_text(text)  # sorted by code point, whatever order chars appear in
        assert corpus.ids.dtype == id_dtype(len(corpus.vocab))
        assert corpus.vocab.decode(corpus.ids) == text
        del corpus  # release the memory map before the folder goes


def test_id_dtype_is_the_narrowest_that_fits():
    assert id_dtype(1) == np.uint8 and id_dtype(256) == np.uint8
    assert id_dtype(257) == np.uint16 and id_dtype(65536) == np.uint16
    assert id_dtype(65537) == np.uint32


def test_vocabulary_outgrowing_uint8_midway_widens_the_id_file(tmp_path):
    # 90 characters first, then 300 more: the one-pass encoder must start again with uint16.
    text = "".join(chr(32 + i) for i in range(90)) * 3 + "".join(chr(0x400 + i) for i in range(300)) + "xyz"
    path = write(tmp_path / "t.txt", text)
    corpus = load_corpus(path, tmp_path / "cache", chunk_bytes=64)
    assert corpus.ids.dtype == np.uint16 and len(corpus.vocab) == len(set(text)) > 256
    assert corpus.vocab.decode(corpus.ids) == text


def test_encoded_corpus_is_memory_mapped_and_cached(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", "hello world\n" * 50)
    first = load_corpus(path, tmp_path / "cache")
    assert isinstance(first.ids, np.memmap) and first.ids.dtype == np.uint8
    monkeypatch.setattr(corpus_cache, "encode_files", lambda *a, **k: pytest.fail("the cache was not reused"))
    again = load_corpus(path, tmp_path / "cache")
    assert again.vocab == first.vocab and np.array_equal(again.ids, first.ids)
    same_vocab = load_corpus(path, tmp_path / "cache", vocab=first.vocab)  # resume: reuses the same ids
    assert np.array_equal(same_vocab.ids, first.ids)


def test_changed_file_is_encoded_again(tmp_path):
    path = write(tmp_path / "t.txt", "aaaa")
    assert load_corpus(path, tmp_path / "cache").vocab.chars == ["a"]
    write(path, "abcabc")
    assert load_corpus(path, tmp_path / "cache").vocab.chars == ["a", "b", "c"]


def test_encoding_with_a_given_vocabulary(tmp_path):
    path = write(tmp_path / "t.txt", "cab")
    wider = Vocab(list("abcdz"))
    corpus = load_corpus(path, tmp_path / "cache", vocab=wider)
    assert corpus.vocab == wider and corpus.ids.tolist() == [2, 0, 1]
    with pytest.raises(UserError, match="character 'c' in .*t.txt is not in the model's vocabulary"):
        load_corpus(path, tmp_path / "cache", vocab=Vocab(list("ab")))


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write(tmp_path / "t.txt", "abcabc")
    load_corpus(path, tmp_path / "cache")
    (ids_file,) = (tmp_path / "cache").rglob("ids.bin")
    ids_file.write_bytes(b"\x00")  # truncated
    assert load_corpus(path, tmp_path / "cache").vocab.decode(load_corpus(path, tmp_path / "cache").ids) == "abcabc"


def test_progress_reports_bytes_up_to_the_file_size(tmp_path):
    text = "héllo wörld " * 40
    path = write(tmp_path / "t.txt", text)
    calls = []
    load_corpus(path, tmp_path / "cache", progress=lambda stage, done, total: calls.append((stage, done, total)),
                chunk_bytes=50)
    encode = [done for stage, done, _ in calls if stage == "encode t.txt"]
    size = len(text.encode("utf-8"))
    assert encode == sorted(encode) and encode[-1] == size
    assert all(total == size for _, _, total in calls)


# -- batchers: the ranks of a distributed run split one global batch -------------------------------------


@pytest.mark.parametrize("world_size", [2, 4])
def test_random_windows_ranks_hold_the_rows_of_the_global_batch(world_size):
    ids = np.arange(1000, dtype=np.uint16) % 97
    whole = RandomWindows(ids, batch_size=8, seq_length=5, seed=3)
    parts = [RandomWindows(ids, 8, 5, 3, rank=r, world_size=world_size) for r in range(world_size)]
    for _ in range(3):
        x, y = whole.next_batch()
        pieces = [p.next_batch() for p in parts]
        assert np.array_equal(np.concatenate([px for px, _ in pieces]), x)
        assert np.array_equal(np.concatenate([py for _, py in pieces]), y)


def test_contiguous_streams_ranks_hold_the_rows_of_the_global_batch():
    ids = np.arange(500, dtype=np.uint16)
    whole = ContiguousStreams(ids, batch_size=4, seq_length=7)
    parts = [ContiguousStreams(ids, 4, 7, rank=r, world_size=2) for r in range(2)]
    for _ in range(whole.batches_per_epoch + 2):  # across an epoch boundary
        x, _ = whole.next_batch()
        assert np.array_equal(np.concatenate([p.next_batch()[0] for p in parts]), x)


def test_contiguous_streams_start_each_epoch_at_a_new_offset_and_stay_contiguous():
    """Issue 21: every pass used to feed the same batches in the same order, and on a small text seen many times
    the val loss swung with them. Each epoch after the first starts the streams elsewhere (the text wraps
    around); within an epoch each stream still continues itself, and a seed gives the same epochs again."""
    n = 503
    ids = np.arange(n, dtype=np.uint16)
    streams = ContiguousStreams(ids, batch_size=4, seq_length=5, seed=7)
    epochs = []
    for _ in range(4):
        batches = [streams.next_batch() for _ in range(streams.batches_per_epoch)]
        x = np.concatenate([b[0].numpy() for b in batches], axis=1)  # each row: its stream over the epoch
        y = np.concatenate([b[1].numpy() for b in batches], axis=1)
        assert np.array_equal(y, (x + 1) % n)  # targets are the next character, across the wrap too
        assert np.array_equal(x[:, 1:], (x[:, :-1] + 1) % n)  # consecutive batches continue each stream
        assert len(np.unique(x)) == x.size  # no character twice in one epoch
        epochs.append(x)
    assert epochs[0][0, 0] == 0  # the first epoch starts at the text's beginning, as before
    assert len({e[0, 0] for e in epochs}) == 4  # then elsewhere each epoch
    again = ContiguousStreams(ids, batch_size=4, seq_length=5, seed=7)
    for _ in range(3 * streams.batches_per_epoch):
        again.next_batch()
    assert np.array_equal(again.next_batch()[0].numpy(), epochs[3][:, :5])
    resumed = ContiguousStreams(ids, batch_size=4, seq_length=5, seed=7)
    resumed.load_state_dict({"position": 0, "epoch": 3})  # a checkpoint taken at the start of epoch 3's batches
    assert np.array_equal(resumed.next_batch()[0].numpy(), epochs[3][:, :5])


# -- the progress bar while a large corpus is encoded ----------------------------------------------------


def test_open_corpus_shows_encoding_progress_on_a_terminal_only(make_config, monkeypatch, tmp_path):
    import io

    from rich.console import Console

    from charrnn import console
    from charrnn.training.setup import encode_corpus

    monkeypatch.setattr(console, "BAR_MIN_BYTES", 0)  # as if the file were large
    cfg = make_config("some text to encode " * 20)
    for terminal in (False, True):
        out = io.StringIO()
        monkeypatch.setattr(console, "stderr_console", lambda out=out, t=terminal: Console(file=out, force_terminal=t))
        cfg.data.cache = str(tmp_path / f"cache-{terminal}")  # a fresh cache: the corpus is encoded each time
        corpus = encode_corpus(cfg, None, quiet=False)
        assert ("encode corpus.txt" in out.getvalue()) == terminal
        assert corpus.vocab.decode(corpus.ids) == "some text to encode " * 20


# -- corpora of many files -------------------------------------------------------------------------------


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write(root / name, content)
    return root


def text_of(corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


def joined(docs: dict[str, str], separator: str = "\n") -> str:
    """The documents of a folder (relative path -> text) as the corpus joins them: in shuffled_order."""
    return separator.join(docs[name] for name in sorted(docs, key=shuffled_order) if docs[name])


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 21])  # files streamed in chunks, or read whole and batched
def test_folder_is_read_recursively_in_a_fixed_shuffled_order_joined_by_the_separator(tmp_path, chunk_bytes):
    folder = tree(tmp_path / "docs", {"b.txt": "bee", "a/z.txt": "zed", "a/b/c.txt": "sea", "a-b.txt": "dash",
                                      ".hidden.txt": "no", ".git/config": "no", "empty.txt": ""})
    corpus = load_corpus(folder, tmp_path / "cache", separator="|", chunk_bytes=chunk_bytes)
    # by a hash of each relative path (hidden and empty files left out): not a/b/c.txt, a/z.txt, a-b.txt, b.txt
    assert text_of(corpus) == "dash|sea|zed|bee" == joined({"b.txt": "bee", "a/z.txt": "zed", "a/b/c.txt": "sea",
                                                            "a-b.txt": "dash"}, "|")
    assert corpus.files == 4 and corpus.skipped == []


@pytest.mark.parametrize(("include", "expected"), [
    ("**/*.py", "mid\ndeep\ntop"),  # pkg/mid.py, pkg/sub/deep.py, top.py
    ("*.py", "top"),
    ("pkg/**/*.py", "mid\ndeep"),
    (["**/*.md", "*.py"], "readme\ntop"),
    ("**/[m]?d.py", "mid"),
])
def test_include_globs_pick_the_files_of_a_folder(tmp_path, include, expected):
    folder = tree(tmp_path / "src", {"top.py": "top", "pkg/mid.py": "mid", "pkg/sub/deep.py": "deep",
                                     "README.md": "readme", "pkg/data.bin": b"\x00\x01"})
    assert text_of(load_corpus(folder, tmp_path / "cache", include=include)) == expected


@pytest.mark.parametrize(("include", "exclude", "expected"), [
    ("**/*.py", "pkg/sub/**", "mid\ntop"),
    (None, ["**/*.md", "**/*.bin", "top.py"], "mid\ndeep"),
    ("**/*.py", "**/*.py", None),
])
def test_exclude_globs_leave_files_out(tmp_path, include, exclude, expected):
    folder = tree(tmp_path / "src", {"top.py": "top", "pkg/mid.py": "mid", "pkg/sub/deep.py": "deep",
                                     "README.md": "readme", "pkg/data.bin": b"\x00\x01"})
    if expected is None:
        with pytest.raises(UserError, match=re.escape("no file matching data.include '**/*.py' outside data.exclude")):
            load_corpus(folder, tmp_path / "cache", include=include, exclude=exclude)
    else:
        assert text_of(load_corpus(folder, tmp_path / "cache", include=include, exclude=exclude)) == expected


@pytest.mark.parametrize("chunk_bytes", [4, 1 << 21])
def test_non_utf8_files_of_a_folder_are_skipped_and_counted_without_leaving_a_trace(tmp_path, chunk_bytes):
    # With chunk_bytes 4, big.bin turns out not to be UTF-8 only after chunks of it were encoded: its characters
    # must leave the vocabulary again, and its ids the id file. With 2 MiB, every file is read into one block,
    # which then fails to decode as a whole.
    folder = tree(tmp_path / "mixed", {"0.bin": b"\xff", "a.txt": "abc", "big.bin": b"QRSTUVWXYZ\xfe",
                                       "c.txt": "cab", "small.bin": b"\x89PNG\xff"})
    corpus = load_corpus(folder, tmp_path / "cache", chunk_bytes=chunk_bytes)
    assert text_of(corpus) == "abc\ncab" and corpus.vocab.chars == ["\n", "a", "b", "c"]
    assert sorted(corpus.skipped) == ["0.bin", "big.bin", "small.bin"] and corpus.files == 2
    again = load_corpus(folder, tmp_path / "cache", chunk_bytes=chunk_bytes)  # from the cache: the same note
    assert sorted(again.skipped) == ["0.bin", "big.bin", "small.bin"]


@pytest.mark.parametrize("chunk_bytes", [4, 1 << 21])
def test_a_character_outside_a_given_vocabulary_names_its_file(tmp_path, chunk_bytes):
    folder = tree(tmp_path / "f", {"a.txt": "abc", "b/c.txt": "cab", "d.txt": "bad é"})
    with pytest.raises(UserError, match="character 'é' in d.txt is not in the model's vocabulary of 6"):
        load_corpus(folder, tmp_path / "cache", vocab=Vocab(list("\n abcd")), chunk_bytes=chunk_bytes)


def test_skipped_file_that_widened_the_id_type_leaves_it_narrow(tmp_path):
    wide = "".join(chr(0x400 + i) for i in range(300)).encode() + b"\xff"  # 300 characters, then not UTF-8
    folder = tree(tmp_path / "f", {"a.txt": "ab" * 10, "b.bin": wide, "c.txt": "cd"})
    corpus = load_corpus(folder, tmp_path / "cache", chunk_bytes=64)
    assert corpus.ids.dtype == np.uint8 and text_of(corpus) == "ab" * 10 + "\ncd"


def test_a_file_named_by_the_user_that_is_not_utf8_is_an_error_even_among_others(tmp_path):
    good, bad = write(tmp_path / "a.txt", "abc"), write(tmp_path / "b.txt", b"ab\xff")
    with pytest.raises(UserError, match="b.txt is not UTF-8 text: invalid byte 0xff at byte offset 2"):
        load_corpus([good, bad], tmp_path / "cache")


def test_several_paths_files_and_folders_in_the_order_given(tmp_path):
    folder = tree(tmp_path / "f", {"x.txt": "xx", "y.txt": "yy"})
    single = write(tmp_path / "single.txt", "ss")
    corpus = load_corpus([single, folder, folder / "x.txt"], tmp_path / "cache")  # x.txt is read once
    assert text_of(corpus) == "ss\nxx\nyy"


@pytest.mark.parametrize(("files", "include", "message"), [
    ({"a.txt": "a"}, "**/*.py", "holds no file matching data.include '**/*.py'"),
    ({}, None, "holds no files"),
    ({"a.txt": ""}, None, "holds only empty files"),
    ({"a.bin": b"\xff"}, None, "holds no text; skipped 1 files that are not UTF-8 text"),
    ({"a.txt": "a"}, "", "empty glob"),
])
def test_a_folder_without_usable_files_is_one_clear_error(tmp_path, files, include, message):
    folder = tree(tmp_path / "f", files)
    folder.mkdir(exist_ok=True)
    with pytest.raises(UserError, match=re.escape(message)):
        load_corpus(folder, tmp_path / "cache", include=include)
    assert not (tmp_path / "cache").exists()


documents = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=12).filter(
    lambda t: not t.startswith("\ufeff")), min_size=1, max_size=6)


@given(docs=documents, separator=st.sampled_from(["\n", "", "<|doc|>"]), chunk_bytes=st.integers(2, 24))
@settings(max_examples=40, deadline=None)
def test_folder_round_trip_is_the_documents_joined_by_the_separator(docs, separator, chunk_bytes):
    if not any(docs):
        docs = [*docs, "x"]
    with tempfile.TemporaryDirectory() as tmp:
        named = {f"{i:02d}.txt": doc for i, doc in enumerate(docs)}
        folder = tree(Path(tmp) / "f", named)
        corpus = load_corpus(folder, Path(tmp) / "cache", separator=separator, chunk_bytes=chunk_bytes)
        assert text_of(corpus) == joined(named, separator)
        assert corpus.vocab == Vocab.from_text(text_of(corpus))
        del corpus


def test_unchanged_folder_is_not_read_again_and_a_changed_or_added_file_is(tmp_path, monkeypatch):
    folder = tree(tmp_path / "f", {"a.txt": "aa", "b.txt": "bb"})
    first = load_corpus(folder, tmp_path / "cache")
    with monkeypatch.context() as m:
        m.setattr(corpus_cache, "encode_files", lambda *a, **k: pytest.fail("an unchanged folder was encoded again"))
        assert text_of(load_corpus(folder, tmp_path / "cache")) == text_of(first)
    write(folder / "c.txt", "cc")
    assert text_of(load_corpus(folder, tmp_path / "cache")) == joined({"a.txt": "aa", "b.txt": "bb", "c.txt": "cc"})
    write(folder / "a.txt", "AA")
    after = joined({"a.txt": "AA", "b.txt": "bb", "c.txt": "cc"})
    assert text_of(load_corpus(folder, tmp_path / "cache")) == after
    encoded = []
    with monkeypatch.context() as m:
        m.setattr(corpus_cache, "encode_files", lambda *a, **k: encoded.append(1) or encode_files(*a, **k))
        os.utime(folder / "b.txt")  # touched, not changed: encoded again all the same (the stat is the key)
        assert text_of(load_corpus(folder, tmp_path / "cache")) == after and encoded == [1]


def test_a_rewrite_that_restores_size_and_mtime_is_encoded_again(tmp_path):
    """As `touch -d` does: the old key (size, mtime) matched and the run trained on the old text."""
    path = write(tmp_path / "t.txt", "aaaa")
    before = path.stat()
    assert text_of(load_corpus(path, tmp_path / "cache")) == "aaaa"
    write(path, "bbbb")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    assert text_of(load_corpus(path, tmp_path / "cache")) == "bbbb"


def test_byte_order_mark_is_dropped_from_each_file(tmp_path):
    bom = b"\xef\xbb\xbf"
    path = write(tmp_path / "t.txt", bom + "hi\ufeffyo".encode())  # a BOM inside the text is a character
    corpus = load_corpus(path, tmp_path / "cache")
    assert text_of(corpus) == "hi\ufeffyo"
    assert read_text(path) == "hi\ufeffyo"
    assert [(s, e) for s, e, _ in iter_text_chunks(path, 2)][0][0] == 3  # byte ranges stay true to the file
    folder = tree(tmp_path / "f", {"a.txt": bom + b"one", "b.txt": bom + b"two", "c.txt": bom})
    for chunk_bytes in (2, 1 << 21):  # files streamed, or read into one block
        corpus = load_corpus(folder, tmp_path / f"cache{chunk_bytes}", chunk_bytes=chunk_bytes)
        assert text_of(corpus) == joined({"a.txt": "one", "b.txt": "two"}) and "\ufeff" not in corpus.vocab


def test_a_failed_encode_leaves_no_empty_cache_folder(tmp_path):
    path = write(tmp_path / "bad.txt", b"abc\xff")
    existing = tmp_path / "existing"
    existing.mkdir()
    for cache in (tmp_path / "new" / "cache", existing):
        with pytest.raises(UserError, match="not UTF-8"):
            load_corpus(path, cache)
    assert not (tmp_path / "new").exists()
    assert list(existing.iterdir()) == []


def test_a_pipe_is_named_as_one(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="is a pipe, not a regular file"):
        load_corpus(fifo, tmp_path / "cache")
    folder = tree(tmp_path / "f", {"a.txt": "abc"})
    os.mkfifo(folder / "b.txt")  # in a folder, a pipe is no document: reading it would wait forever
    assert text_of(load_corpus(folder, tmp_path / "cache")) == "abc"


def test_a_changed_file_replaces_its_cache_entry_and_leaves_others(tmp_path):
    """Issue 21, item 9: every change of a corpus file left a full copy behind in the cache, for ever."""
    from charrnn.data.cache import load_corpus

    cache, a, b = tmp_path / "cache", tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("hello world\n" * 50)
    b.write_text("other text\n" * 50)
    load_corpus(b, cache)
    first = load_corpus(a, cache)
    assert len(list(cache.iterdir())) == 2
    a.write_text("hello there\n" * 60)
    os.utime(a, ns=(1, 1))  # a changed stamp, whatever the clock's resolution
    second = load_corpus(a, cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert second.entry.name in entries and first.entry.name not in entries and len(entries) == 2
    assert (first.ids == first.ids).all()  # the superseded mapping stays readable where it is still open
    assert second.vocab.decode(second.ids[:12]) == "hello there\n"
