"""Fine-tuning: a new run that starts from a trained model's weights (`charrnn train --init-from RUN`).

The new run takes the source's model section, a fresh optimizer and schedule, and starts at step 0 on its own
corpus. Its vocabulary is the source's merged with the characters new in the corpus (sorted, as every
vocabulary is): the rows (embedding, one-hot input columns, output head) of the source's characters are
copied to their new places, those of new characters keep their fresh initialisation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from charrnn.config import Config, config_from_dict
from charrnn.errors import UserError
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.vocab import Vocab


def source_checkpoint(spec: str | Path, runs_dir: str | Path = "runs") -> tuple[Path, dict]:
    """The checkpoint --init-from names (a run folder: its best.pt, else last.pt) and its contents; a bare name
    of a run under runs_dir (log.dir) is suggested when spec is neither."""
    try:
        path = resolve_checkpoint(spec, "best", runs_dir)
    except UserError as exc:
        raise UserError(f"--init-from {spec}: {exc}") from None
    path = path.resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _last_source[0] != key:  # the config check and the set-up ask for it in turn: it is read once
        _last_source[:] = [key, load_checkpoint(path)]
    return path, _last_source[1]


_last_source: list = [None, None]  # (path, size, mtime) and the contents of the last source read


def take_source_model(raw: dict) -> dict:
    """Raw config data with init_from set -> the same with the source's model section and init_from resolved
    to the checkpoint file. A model key the config sets to another value than the source's is refused."""
    cfg = config_from_dict(raw)  # every key checked as for any run, before the source is looked at
    path, state = source_checkpoint(raw["init_from"], cfg.log.dir)
    source_model = state["config"]["model"]
    for key, value in (raw.get("model") or {}).items():
        if value != source_model.get(key) and value != "auto":
            raise UserError(f"--init-from: the config sets model.{key}={value!r}, but {path} was trained with "
                            f"{source_model.get(key)!r}; fine-tuning keeps the source's model, so leave "
                            f"model.{key} out of the config and --set")
    raw = copy.deepcopy(raw)
    raw["model"] = dict(source_model)
    raw["init_from"] = str(path)
    return raw


def with_source_model(cfg: Config, path: Path, state: dict) -> Config:
    """cfg with the model section of the source checkpoint (what a library caller of train() gets) and
    init_from naming the checkpoint file."""
    raw = cfg.to_dict()
    raw["model"] = dict(state["config"]["model"])
    raw["init_from"] = str(path)
    return config_from_dict(raw)


def extended_vocab(source: Vocab, corpus: Vocab) -> Vocab:
    """The source's characters and the corpus's new ones, in sorted order."""
    return Vocab(sorted(set(source.chars) | set(corpus.chars)))


def load_source_weights(model: CharRNN, source_weights: dict, source: Vocab, vocab: Vocab) -> None:
    """Copy a source model's weights into model (built for vocab, a superset of source): per-character rows
    go to their characters' new indices; the rows of new characters keep model's initialisation."""
    index = torch.tensor([vocab.index[c] for c in source.chars], dtype=torch.long)
    vocab_dim = {"embedding.weight": 0, "head.weight": 0, "head.bias": 0}
    if model.embedding is None:
        vocab_dim["rnn.weight_ih_l0"] = 1  # one-hot input: a column per character
    merged = model.state_dict()
    with torch.no_grad():
        for name, weight in source_weights.items():
            if name not in merged:
                raise UserError(f"--init-from: the source checkpoint has a weight {name!r} this model does not")
            target = merged[name]
            if name in vocab_dim:
                target.index_copy_(vocab_dim[name], index.to(target.device), weight.to(target))
            else:
                target.copy_(weight)
    model.load_state_dict(merged)
