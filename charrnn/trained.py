"""A trained model, loaded from a run folder or a checkpoint file: what `sample`, `eval`, `info`, `inspect`,
`export` and the Python API (`charrnn.load`) start from. Loading never imports the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.config import Config, config_from_dict
from charrnn.device import resolve_device
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.vocab import Vocab


@dataclass
class Model:
    """A trained charrnn model: the network (`net`, in eval mode), its vocabulary and config, and where it came
    from (`run`, `checkpoint`) with the checkpoint's progress record (`state`: step, best_val, val, ...)."""

    net: CharRNN
    vocab: Vocab
    config: Config
    run: Path
    checkpoint: Path
    state: dict
    device: torch.device


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> tuple[CharRNN, Vocab, Config]:
    """Rebuild the network, vocabulary and config stored in a loaded checkpoint dict."""
    try:
        cfg = config_from_dict(state["config"])
        vocab = Vocab(state["vocab"])
        net = CharRNN(len(vocab), cfg.model)
        net.load_state_dict(state["model"])
    except (UserError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"checkpoint does not match its own config ({str(exc).splitlines()[0][:160]}); "
                        "it was written by an incompatible charrnn") from None
    return net.to(device).eval(), vocab, cfg


def load(run: str | Path, *, checkpoint: str = "best", device: str | torch.device = "cpu") -> Model:
    """Load a trained run (a run folder or a checkpoint file). checkpoint: best (best.pt, else last.pt), last,
    or the path of a checkpoint file; device: cpu, cuda, cuda:N, mps or auto."""
    run = Path(run)
    dev = device if isinstance(device, torch.device) else resolve_device(device or "cpu")
    path = resolve_checkpoint(run, checkpoint)
    state = load_checkpoint(path)
    net, vocab, cfg = model_from_checkpoint(state, dev)
    progress = {k: v for k, v in state.items() if k not in ("model", "optimizer", "scaler", "hidden")}
    return Model(net=net, vocab=vocab, config=cfg, run=run, checkpoint=path, state=progress, device=dev)
