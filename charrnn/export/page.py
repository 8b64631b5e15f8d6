"""`charrnn export --format html`: one self-contained page (inline CSS and JavaScript, the weights inside, no
network request) that samples from the model in the browser. The weights travel as the inspect page's data does:
deflated and in base64, byte planes apart (all first bytes, then all second bytes, ...), which deflate packs ~8%
smaller than whole floats; the page inflates them with the browser's DecompressionStream."""

from __future__ import annotations

import base64
import math
import zlib
from importlib import resources

import numpy as np

from charrnn.data.corpus import data_paths
from charrnn.errors import UserError
from charrnn.export import wasm
from charrnn.export.weights import StepWeights, step_weights
from charrnn.inspection.recording import describe_model
from charrnn.standalone_page import fill, page_head, script_json
from charrnn.trained import Model

FLOAT16_MAX = float(np.finfo(np.float16).max)


def pack_weights(sw: StepWeights, weights: str) -> tuple[dict[str, list[int]], str]:
    """All arrays as one float32 (fp32) or float16 (fp16) vector: {name: [offset, size]} and the vector as
    base64 of its deflated byte planes."""
    dtype = np.float16 if weights == "fp16" else np.float32
    if weights == "fp16":
        largest = max(float(np.abs(a).max(initial=0.0)) for a in sw.arrays.values())
        if largest > FLOAT16_MAX:
            raise UserError(f"a weight of {largest:.4g} is beyond float16's range ({FLOAT16_MAX:g}); "
                            "export with --weights fp32")
    manifest, offset = {}, 0
    for name, array in sw.arrays.items():
        manifest[name] = [offset, int(array.size)]
        offset += int(array.size)
    values = np.concatenate([a.ravel() for a in sw.arrays.values()]).astype(np.dtype(dtype).newbyteorder("<"))
    planes = np.ascontiguousarray(values.view(np.uint8).reshape(-1, values.itemsize).T)
    return manifest, base64.b64encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")


def facts(model: Model, weights: str) -> list[list[str]]:
    """What the page's header says about the model: [label, value] pairs."""
    net, state = model.net, model.state
    params = sum(p.numel() for p in net.parameters())
    corpus = ", ".join(_file_name(p) for p in data_paths(model.config)) or "not recorded"
    loss = state.get("best_val")
    if loss is None:
        loss = (state.get("val") or {}).get("loss")
    shown_loss = f"{loss:.4f} nats/char ({loss / math.log(2):.3f} bpc)" if _finite(loss) else "not measured"
    return [["model", f"{describe_model(net)}, {params:,} parameters"], ["trained on", corpus],
            ["val loss", shown_loss], ["checkpoint", f"{model.checkpoint.name}, step {state.get('step', 0):,}"],
            ["vocabulary", f"{len(model.vocab)} characters"],
            ["weights", "float16" if weights == "fp16" else "float32"]]


def render_page(model: Model, weights: str = "fp32") -> bytes:
    """The page for `model` with its weights as float32 (fp32) or float16 (fp16), UTF-8 encoded."""
    sw = step_weights(model.net)
    manifest, blob = pack_weights(sw, weights)
    data = {"format": "charrnn-page", "version": 1, "cell": sw.cell, "nonlinearity": sw.nonlinearity,
            "layers": sw.num_layers, "hidden": sw.hidden_size, "vocab": model.vocab.chars,
            "first_char": model.state.get("first_char") or model.vocab.chars[0],
            "dtype": "f16" if weights == "fp16" else "f32", "arrays": manifest,
            "kernel": base64.b64encode(wasm.module()).decode("ascii"),
            "info": {"run": model.config.name, "facts": facts(model, weights)}}
    folder = resources.files("charrnn.export")
    template = (folder / "page.html").read_text(encoding="utf-8")
    script = "\n".join((folder / name).read_text(encoding="utf-8") for name in ("sampler.js", "page.js"))
    head = page_head(f"charrnn: {model.config.name}", "export page", wasm=True)
    parts = {"HEAD": head, "MODEL": script_json(data), "WEIGHTS": blob, "SCRIPT": script}
    return fill(template, parts).encode("utf-8")


def _file_name(path: str) -> str:
    name = path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return name or path


def _finite(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)

