"""What a run remembers of its corpus: per file its path, length in bytes and a fast fingerprint (XXH3-64 of its
bytes), and the characters of the whole text. Taken when the corpus is encoded (kept in the cache entry's
meta.json), saved in every checkpoint, and compared by `eval`, `inspect`, `sample --novelty` and `--resume`
with the text they read, so that a changed corpus is said, not scored under the old name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import xxhash

_READ = 1 << 22


def file_fingerprint(path: str | Path) -> str:
    """XXH3-64 of a file's bytes, as hex (about 10 GB/s: a fraction of what encoding the text costs)."""
    h = xxhash.xxh3_64()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(paths: Sequence[str]) -> list[dict]:
    """[{"path", "bytes", "xxh3"}] for each file of a corpus, in reading order."""
    out = []
    for path in paths:
        size = Path(path).stat().st_size
        out.append({"path": str(path), "bytes": size, "xxh3": file_fingerprint(path)})
    return out


def _files(record: dict) -> dict[str, dict]:
    files = record.get("files") if isinstance(record, dict) else None
    return {f["path"]: f for f in files or [] if isinstance(f, dict) and "path" in f}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def corpus_change(recorded: dict | None, current: dict) -> str | None:
    """How the text read now differs from the one a run recorded (None: the same, or nothing recorded, as in a
    checkpoint from before charrnn recorded it): which files changed, came or went, and the characters then
    and now."""
    if not isinstance(recorded, dict) or not _files(recorded):
        return None
    before, now = _files(recorded), _files(current)
    changed = [p for p in before if p in now and before[p].get("xxh3") != now[p].get("xxh3")]
    added = [p for p in now if p not in before]
    removed = [p for p in before if p not in now]
    chars_then, chars_now = recorded.get("chars"), current.get("chars")
    if not (changed or added or removed) and chars_then == chars_now:
        return None
    parts = [f"{p} holds other text ({before[p].get('bytes', 0):,} bytes then, {now[p]['bytes']:,} now)"
             for p in changed[:2]]
    if len(changed) > 2:
        parts.append(f"{_plural(len(changed) - 2, 'more file')} changed")
    if added:
        parts.append(f"{_plural(len(added), 'file')} added ({added[0]}{', ...' if len(added) > 1 else ''})")
    if removed:
        parts.append(f"{_plural(len(removed), 'file')} gone ({removed[0]}{', ...' if len(removed) > 1 else ''})")
    if isinstance(chars_then, int) and isinstance(chars_now, int):
        parts.append(f"the text was {chars_then:,} characters, now {chars_now:,}")
    return "; ".join(parts)
