"""The inspect page and the --json summary: a recording as compact data, rendered into one self-contained
HTML file."""

from __future__ import annotations

import base64
import math
import zlib

import numpy as np

from charrnn.inspection.recording import Recording, mean_bits
from charrnn.inspection.units import rank_units, saturation
from charrnn.standalone_page import fill, page_head, script_json
from charrnn.vocab import visible_char


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
    from charrnn.inspection.template import TEMPLATE

    head = page_head(f"charrnn inspect: {data.get('run', '')}", "inspect page", data_images=True)
    return fill(TEMPLATE, {"HEAD": head, "DATA": script_json(data)})


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None

