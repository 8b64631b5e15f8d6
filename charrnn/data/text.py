"""Reading a corpus file as UTF-8 text, in chunks that never split a character; what is not a
regular file or not UTF-8 is named with its byte offset."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from charrnn.errors import UserError

# 2 MiB per read: large enough that per-chunk overhead vanishes, small enough that the chunk's temporaries
# (up to 4 bytes per character) are reused by malloc rather than page-faulted in afresh: measured 220 MB/s
# against 100 MB/s with 16 MiB chunks.
CHUNK_BYTES = 1 << 21


_BOM = b"\xef\xbb\xbf"


class NotUtf8(UserError):
    """A file that is not UTF-8 text (the message gives the byte offset)."""


def _not_regular(path: Path) -> str | None:
    """What a path that exists is, when it is not a regular file or a folder (charrnn reads a corpus twice:
    once to encode it, and its size and times key the cache), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def check_corpus_path(path: Path) -> None:
    """A UserError unless path is a regular file or a folder; a pipe such as /dev/stdin is named as one."""
    kind = _not_regular(path)
    if kind is not None:
        raise UserError(f"data path {path} is {kind}, not a regular file: charrnn encodes the corpus once into a "
                        "cache keyed by the file, so it needs a file it can read again; save the text first "
                        "(e.g. ... > corpus.txt) and pass that file")
    if not path.exists():
        raise UserError(f"data file not found: {path} (pass an existing UTF-8 text file or folder with --data or "
                        "data.path)")


def _check_readable(path: Path) -> None:
    check_corpus_path(path)
    if not path.is_file():
        raise UserError(f"data path {path} is not a file; pass a UTF-8 text file")
    if path.stat().st_size == 0:
        raise UserError(f"data file {path} is empty; give it some text to learn from")


def iter_text_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, text): the text of the file's bytes [start, end), read about chunk_bytes at a time
    without splitting a character; a leading byte-order mark is skipped (as utf-8-sig does); invalid UTF-8
    is a NotUtf8 error that gives its byte offset."""
    path = Path(path)
    _check_readable(path)
    offset = 0  # file offset of buf[0]
    carry = b""  # the start of a character cut by the previous read
    with open(path, "rb") as f:
        if f.read(len(_BOM)) == _BOM:
            offset = len(_BOM)
        else:
            f.seek(0)
        while True:
            block = f.read(chunk_bytes)
            buf = carry + block
            if not buf:
                return
            try:
                text = buf.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as exc:
                cut = exc.reason == "unexpected end of data" and exc.start >= len(buf) - 3
                if cut and not block:
                    raise NotUtf8(f"data file {path} is not UTF-8 text: it ends inside a character at byte "
                                  f"offset {offset + exc.start}") from None
                if not cut:
                    raise NotUtf8(
                        f"data file {path} is not UTF-8 text: invalid byte 0x{buf[exc.start]:02x} at byte offset "
                        f"{offset + exc.start}; convert it to UTF-8 (e.g. iconv -t UTF-8)"
                    ) from None
                text, carry = buf[: exc.start].decode("utf-8"), buf[exc.start:]  # the cut character goes on
            end = offset + len(buf) - len(carry)
            if text:
                yield offset, end, text
            offset = end
            if not block:
                return


def read_text(path: str | Path) -> str:
    """Read a whole UTF-8 text file with the same checks as the chunked reader."""
    return "".join(text for _, _, text in iter_text_chunks(path))
