"""`charrnn export`: a trained run as one web page that samples in the browser (html), or as a single-step ONNX
model for a sampler in any language (onnx). Read-only: it loads the run through charrnn.trained and never imports
the training loop."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import UserError

FORMATS = ("html", "onnx")
WEIGHTS = ("fp32", "fp16")
ONNX_EXTRA = ('--format onnx needs the onnx package, which charrnn installs only with its export extra: '
              'pip install "charrnn[export]" (in a checkout: pip install -e ".[export]")')


@dataclass
class Exported:
    path: Path
    size: int  # bytes
    format: str
    weights: str
    checkpoint: Path


def default_out(run: Path, fmt: str) -> Path:
    """RUN/<run name>.<fmt> for a run folder; beside a checkpoint file, <file stem>.<fmt> (in the run folder,
    <run name>-<stem>.<fmt>, for one in a run's checkpoints/)."""
    if run.is_dir():
        return run / f"{run.resolve().name}.{fmt}"
    folder = run.parent
    if folder.name == "checkpoints" and (folder.parent / "config.yaml").is_file():
        return folder.parent / f"{folder.parent.resolve().name}-{run.stem}.{fmt}"
    return run.with_suffix(f".{fmt}")


def export(run: str | Path, *, fmt: str = "html", out: str | Path | None = None, weights: str = "fp32",
           checkpoint: str = "best", overwrite: bool = False) -> Exported:
    """Write the run's model (its best.pt unless `checkpoint` says last or a path) as `fmt` to `out` (default:
    default_out), with float32 or float16 weights. An existing `out` is replaced only with overwrite."""
    from charrnn.paths import user_path
    from charrnn.safe_files import check_user_output, write_user_file
    from charrnn.trained import load

    if fmt not in FORMATS:
        raise UserError(f"--format must be html or onnx, got {fmt!r}")
    if weights not in WEIGHTS:
        raise UserError(f"--weights must be fp32 or fp16, got {weights!r}")
    if fmt == "onnx" and not _has_onnx():
        raise UserError(ONNX_EXTRA)
    run = user_path(run)
    model = load(run, checkpoint=checkpoint, device="cpu")
    out = out if out is None or str(out) == "" else user_path(out)  # '' is refused in one line
    out = out if out is not None else default_out(run, fmt)
    keep = _run_files(model)
    example = f"model.{fmt}"
    check_user_output(out, overwrite=overwrite, example=example, keep=keep)  # refused before the slow part
    data = _page(model, weights) if fmt == "html" else _onnx(model, weights)
    write_user_file(out, data, overwrite=overwrite, example=example, keep=keep)
    return Exported(path=out, size=len(data), format=fmt, weights=weights, checkpoint=model.checkpoint)


def _has_onnx() -> bool:
    try:
        return importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        return False


def _page(model, weights: str) -> bytes:
    from charrnn.export.page import render_page

    return render_page(model, weights)


def _onnx(model, weights: str) -> bytes:
    from charrnn.export.onnx_graph import build_model
    from charrnn.export.weights import step_weights

    return build_model(step_weights(model.net), onnx_metadata(model, weights), fp16=weights == "fp16") \
        .SerializeToString()


def onnx_metadata(model, weights: str) -> dict[str, str]:
    """The ONNX model's metadata_props: the vocabulary (JSON list, index order), the state tensors' names (JSON list;
    the outputs add _next), the model settings (JSON) and where the weights came from."""
    from charrnn import __version__

    state = model.state
    loss = state.get("best_val")
    if loss is None:
        loss = (state.get("val") or {}).get("loss")
    return {
        "vocab": json.dumps(model.vocab.chars, ensure_ascii=False),
        "first_char": state.get("first_char") or model.vocab.chars[0],
        "state": json.dumps(["h", "c"] if model.config.model.cell == "lstm" else ["h"]),
        "model": json.dumps(model.config.to_dict()["model"]),
        "run": model.config.name,
        "checkpoint": model.checkpoint.name,
        "step": str(state.get("step", 0)),
        "val_loss": f"{loss:.6f}" if isinstance(loss, float | int) and math.isfinite(loss) else "",
        "weights": weights,
        "charrnn_version": __version__,
    }


def _run_files(model) -> list[tuple[Path, str]]:
    """The files of the exported run that --out must never replace (with what each is)."""
    from charrnn.data.corpus import data_paths
    from charrnn.run.folder import RunPaths

    files = [(model.checkpoint, "the checkpoint being exported")]
    root = model.run if model.run.is_dir() else None
    if root is not None:
        paths = RunPaths(root)
        files += [(p, "a checkpoint of the run") for p in sorted(paths.checkpoints.glob("*.pt"))]
        files += [(paths.config, "the run's config"), (paths.vocab, "the run's vocabulary"),
                  (paths.metrics, "the run's metrics")]
    files += [(Path(p), "the run's corpus") for p in data_paths(model.config)]
    return files
