"""Typed configuration: YAML loading, `--set a.b=v` overrides and validation.

Every field is declared once, with its type and the values it allows; validation
and error messages are derived from those declarations.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from charrnn.errors import UserError, shorten, shown
from charrnn.paths import relative_to_folder, user_path

AUTO = "auto"
Auto = Literal["auto"]  # a field typed `int | Auto` also takes the string auto, resolved when training starts


def _spec(default: Any, *, choices: tuple | None = None, lo: float | None = None,
          hi: float | None = None, lo_open: bool = False, hi_open: bool = False, doc: str = "",
          path: str | None = None) -> Any:
    """A dataclass field with its allowed values recorded in metadata. path: "input" for a file or folder the run
    reads (relative to the config file that names it), "output" for one it writes (relative to the current
    folder); see docs/paths.md."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "doc": doc, "path": path}
    return field(default=default, metadata=meta)


MAX_SEED = 2**63 - 1  # seeds are 64-bit signed integers, as most tools take them; what torch and numpy both accept


@dataclass
class DataConfig:
    path: str | list[str] | None = _spec(None, doc="UTF-8 text file, folder (read recursively) or list of them",
                                         path="input")
    include: str | list[str] | None = _spec(None, doc="glob(s) that pick a folder's files, e.g. '**/*.py'; "
                                            "default: every file")
    exclude: str | list[str] | None = _spec(None, doc="glob(s) of a folder's files to leave out, e.g. 'tests/**'")
    separator: str = _spec("\n", doc="text put between two documents (files)")
    val_fraction: float = _spec(0.1, lo=0.0, hi=1.0, hi_open=True)
    test_fraction: float = _spec(0.0, lo=0.0, hi=1.0, hi_open=True)
    cache: str | None = _spec(None, doc="folder for the encoded id file; default: <log.dir>/.cache", path="output")


@dataclass
class ModelConfig:
    cell: str = _spec("lstm", choices=("rnn", "gru", "lstm"))
    nonlinearity: str = _spec("tanh", choices=("tanh", "relu"))
    encoding: str = _spec("embedding", choices=("onehot", "embedding"))
    embedding_dim: int | Auto = _spec(64, lo=1, doc="auto: equal to hidden_size")
    hidden_size: int | Auto = _spec(128, lo=1, doc="auto: chosen from this machine's speed and train.time_budget")
    num_layers: int = _spec(2, lo=1)
    dropout: float | Auto = _spec(0.0, lo=0.0, hi=1.0, hi_open=True, doc="auto: follows hidden_size")
    tie_weights: bool = _spec(False)
    bidirectional: bool = _spec(False)


@dataclass
class TrainConfig:
    seq_length: int = _spec(64, lo=1)
    batch_size: int = _spec(32, lo=1)
    max_steps: int | None = _spec(2000, lo=1)
    max_epochs: float | None = _spec(None, lo=0.0, lo_open=True)
    time_budget: float | None = _spec(None, lo=0.0, lo_open=True, doc="seconds")
    batching: str = _spec("random", choices=("random", "stateful", "auto"),
                          doc="auto: stateful, or random where the run passes over its text 40 times or more")
    optimizer: str = _spec("adamw", choices=("adamw", "adam", "rmsprop", "sgd"))
    lr: float | Auto = _spec(0.003, lo=0.0, lo_open=True, doc="auto: follows model.hidden_size (adam, adamw)")
    lr_schedule: str = _spec("cosine", choices=("constant", "cosine", "step"))
    min_lr_ratio: float = _spec(0.1, lo=0.0, hi=1.0)
    lr_step_every: float = _spec(0.33, lo=0.0, hi=1.0, lo_open=True, doc="step schedule: fraction of the run")
    lr_step_gamma: float = _spec(0.1, lo=0.0, hi=1.0, lo_open=True)
    warmup_steps: int = _spec(0, lo=0)
    weight_decay: float | Auto = _spec(0.0, lo=0.0, doc="auto: 0.1, rising to 0.3 where the run passes over its "
                                       "text 17 times or more")
    decay_vectors: bool = _spec(False, doc="weight decay on biases and other 1-D tensors too; default: matrices "
                                "(and the embedding) only, as nanoGPT does")
    grad_clip: float = _spec(1.0, lo=0.0, doc="0 turns clipping off")
    ema: float | Auto | None = _spec(None, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                                     doc="evaluate, checkpoint and sample an exponential moving average of the "
                                         "weights with this decay per step (0.998: about the last 500 steps); "
                                         "null: the weights; auto: on where the run passes over its text 10 "
                                         "times or more, over about the last eighth of its steps")
    eval_every: int | Auto = _spec(200, lo=1, doc="auto: every 500 steps, 250 where the run passes over its text 10 "
                                   "times or more (a small text overfits between two evaluations 500 apart)")
    patience: int | None = _spec(None, lo=1, doc="stop after this many evaluations without a better val loss")
    patience_from: float = _spec(0.0, lo=0.0, hi=1.0, doc="the fraction of the run (by steps, or by time under a "
                                 "budget) before which patience does not stop it: early on the learning rate is "
                                 "high and the val loss noisy")
    patience_min_delta: float = _spec(0.0, lo=0.0, doc="how much an evaluation must beat the best val loss by to "
                                      "restart patience's count (best.pt keeps any better model): a late run's "
                                      "gains of 0.0001 are noise, not learning")
    patience_rises: int | None = _spec(None, lo=1, doc="also stop after this many evaluations in a row that each "
                                       "scored worse than the one before (from patience_from on): a model "
                                       "learning its text by heart, its val loss climbing from its best")
    eval_max_chars: int | Auto | None = _spec(
        "auto", lo=1, doc="validation characters an evaluation during training scores: auto (a fixed sample of a "
        "large split), a number, or null (the whole split)")
    checkpoint_every: int = _spec(200, lo=1)
    device: str = _spec("auto")
    precision: str = _spec("fp32", choices=("fp32", "bf16", "fp16", "auto"))
    compile: bool = _spec(False)
    # More than ~1000 threads crash torch (100000: a segfault in its thread pool; 2**31: an overflow).
    threads: int | None = _spec(None, lo=1, hi=1024, doc="CPU threads; default: torch's choice")


@dataclass
class LogConfig:
    dir: str = _spec("runs", path="output")
    tensorboard: bool = _spec(True)
    sample_every: int = _spec(500, lo=0, doc="0 turns samples off")
    sample_length: int = _spec(200, lo=1)
    histogram_every: int = _spec(0, lo=0, doc="evals between weight histograms; 0 turns them off")


@dataclass
class Config:
    name: str = _spec("run")
    seed: int = _spec(0, lo=0, hi=MAX_SEED)
    init_from: str | None = _spec(None, doc="fine-tuning: the run or checkpoint whose weights the run starts from",
                                  path="input")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _words(tp: Any) -> tuple[str, ...]:
    """The strings a field takes besides its base type (`int | Auto` -> ("auto",))."""
    return tuple(w for a in typing.get_args(tp) if typing.get_origin(a) is Literal for w in typing.get_args(a))


def _base(tp: Any) -> Any:
    """The value type of a field: int for `int`, `int | None` and `int | Auto`."""
    args = [a for a in typing.get_args(tp) if a is not type(None) and typing.get_origin(a) is not Literal]
    return args[0] if args else tp


def _type_name(tp: Any) -> str:
    base = _base(tp)
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(base, str(base))
    if list[str] in typing.get_args(tp):
        name += " or a list of strings"
    return name + "".join(f" or {w!r}" for w in _words(tp)) + (" or null" if _is_optional(tp) else "")


def _is_optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def is_auto(value: Any) -> bool:
    """Whether a config value is the word auto (to be resolved when training starts)."""
    return isinstance(value, str) and value == AUTO


def _coerce(key: str, value: Any, tp: Any, meta: dict) -> Any:
    """Check one leaf value against its declared type and range; return it in canonical form."""
    if value is None:
        if _is_optional(tp):
            return None
        raise UserError(f"config key '{key}' must be {_type_name(tp)}, got null")
    if list[str] in typing.get_args(tp) and isinstance(value, list):  # e.g. data.path: several files
        if not value or not all(isinstance(v, str) for v in value):
            raise UserError(f"config key '{key}' must be a non-empty list of strings, got {value!r}")
        return list(value)
    if isinstance(value, str) and value in _words(tp):
        return value
    base = _base(tp)
    ok = (
        (base is bool and isinstance(value, bool))
        or (base is int and isinstance(value, int) and not isinstance(value, bool))
        or (base is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (base is str and isinstance(value, str))
    )
    if not ok:
        hint = ""
        if base is str and isinstance(value, int | float | bool):  # YAML read 123, 1e3 or yes as a number or flag
            kind = {bool: "true/false flag", int: "number", float: "number"}[type(value)]
            text = value if type(value) is int else "..."  # 1e3 and yes are not what the user typed
            hint = (f"; YAML reads the value as a {kind}: quote it to mean text (in a config file "
                    f"{key.split('.')[-1]}: \"{text}\", on the command line --set '{key}=\"{text}\"')")
        raise UserError(f"config key '{key}' must be {_type_name(tp)}, got {shown(value)}{hint}")
    if base is float:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise UserError(f"config key '{key}' must be a finite number, got {shown(value)}")
    if base is str and "\0" in value:
        raise UserError(f"config key '{key}' contains a NUL character (\\0) at position {value.index(chr(0))}, "
                        "which no file or folder name can hold; remove it")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise UserError(f"config key '{key}' must be one of {', '.join(choices)}; got {shown(value)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta["lo_open"] and value == lo)):
        bound = f"> {lo}" if meta["lo_open"] else f">= {lo}"
        raise UserError(f"config key '{key}' must be {bound}, got {shown(value)}")
    if hi is not None and (value > hi or (meta["hi_open"] and value == hi)):
        bound = f"< {hi}" if meta["hi_open"] else f"<= {hi}"
        raise UserError(f"config key '{key}' must be {bound}, got {shown(value)}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        where = f"section '{prefix.rstrip('.')}'" if prefix else "the config file"
        raise UserError(f"{where} must be a mapping of keys to values, got {type(raw).__name__}")
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = shorten(f"{prefix}{unknown[0]}")
        raise UserError(f"unknown config key '{key}'{_not_ascii(unknown[0], fields)}; "
                        f"allowed keys here: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, value if value is not None else {}, f"{prefix}{name}.")
        else:
            values[name] = _coerce(f"{prefix}{name}", value, tp, dict(fields[name].metadata))
    return cls(**values)


def _not_ascii(key: Any, known: typing.Iterable[str]) -> str:
    """For a key with a non-ASCII character (a Cyrillic 'а' in 'trаin'): which character, and the ASCII key it
    looks like; else ''."""
    if not isinstance(key, str) or key.isascii():
        return ""
    pos, ch = next((i, c) for i, c in enumerate(key) if not c.isascii())
    name = unicodedata.name(ch, "")
    what = f"U+{ord(ch):04X}{f' {name}' if name else ''}"
    like = [k for k in known
            if len(k) == len(key) and all(a == b for a, b in zip(k, key, strict=True) if b.isascii())]
    hint = f" (a look-alike of '{like[0]}'?)" if like else ""
    return f": its character {pos + 1} is {what}, not ASCII{hint}; type the key in plain ASCII"


def _check_whole(cfg: Config) -> None:
    """Rules that involve more than one key."""
    if cfg.model.bidirectional:
        raise UserError(
            "model.bidirectional: true is not allowed: a language model predicts the next character and "
            "must not see the future; remove the key or set it to false"
        )
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        raise UserError("data.val_fraction + data.test_fraction must be < 1 so that some text is left to train on")
    t = cfg.train
    if t.max_steps is None and t.max_epochs is None and t.time_budget is None:
        raise UserError("set one of train.max_steps, train.max_epochs or train.time_budget so training can stop")
    m = cfg.model
    if is_auto(m.hidden_size) and t.time_budget is None:
        raise UserError("model.hidden_size: auto needs train.time_budget (seconds): the width is chosen for the "
                        "time the run has; set one, or give hidden_size a number")
    # Tied weights make the embedding as wide as the hidden state; under hidden_size: auto it follows the width.
    follows = is_auto(m.embedding_dim) or is_auto(m.hidden_size) or m.embedding_dim == m.hidden_size
    if m.tie_weights and (m.encoding != "embedding" or not follows):
        raise UserError(
            "model.tie_weights needs encoding: embedding and embedding_dim equal to hidden_size (or auto) "
            f"(got encoding={m.encoding}, embedding_dim={m.embedding_dim}, hidden_size={m.hidden_size})"
        )
    if is_auto(t.lr) and t.optimizer not in ("adam", "adamw"):
        raise UserError(f"train.lr: auto is fitted for the adam and adamw optimizers; with train.optimizer "
                        f"{t.optimizer} give train.lr a number")
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise UserError(f"config key 'name' must be a plain folder name, got {shown(cfg.name)}")
    if cfg.name == ".cache":  # corpus.default_cache_dir: the run would share its folder with the encoded corpora
        raise UserError("config key 'name' is '.cache', the folder under log.dir that holds the encoded corpora; "
                        "give the run another name")


def config_from_dict(raw: Any) -> Config:
    """Build and validate a Config from plain data (as parsed from YAML)."""
    cfg = _build(Config, {} if raw is None else raw, "")
    _check_whole(cfg)
    return cfg


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but 3e-4 and 1e6 are numbers (as in YAML 1.2), not the strings YAML 1.1 makes them,
    and a key given twice is an error, not a silent loss of the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges defaults that the keys after it may override
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key_node.value)} at lines {first_line[key]} and {line}; "
                    "keep one (merge the two into one section)", key_node.start_mark)
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


MAX_YAML_VALUES = 100_000  # a config holds about 50; aliases that expand beyond this are a "billion laughs" file


def _check_expansion(root: yaml.Node) -> None:
    """Refuse, before anything is built, YAML whose aliases expand to more than MAX_YAML_VALUES values: nine
    levels of nine aliases are 412 bytes that every later walk or echo of the value would expand to 9**9."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size; an alias is the same node object again

    def size(node: yaml.Node, open_: set[int]) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise yaml.constructor.ConstructorError(
                None, None, "a YAML alias refers to a value that contains it; write the config without it",
                node.start_mark)
        total = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            open_.add(id(node))
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child, open_)
                if total > MAX_YAML_VALUES:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"its aliases expand to more than {MAX_YAML_VALUES:,} values (a 'billion "
                        "laughs' file?); a charrnn config needs no aliases of that size", None)
            open_.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, set())


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds no arbitrary objects


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b=value` into (["a", "b"], value), the value parsed as YAML (so 0.01, true, null work)."""
    if "=" not in text:
        raise UserError(f"--set expects KEY=VALUE (for example train.lr=0.01), got {shown(text)}")
    key, _, raw_value = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"--set expects KEY=VALUE with a dotted key such as train.lr, got {shown(text)}")
    try:
        value = _load_yaml(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    return parts, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of raw config data with each `a.b=v` override applied."""
    result = _deep_copy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        _set_key(result, parts, value, f"--set {text}")
    return result


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of raw config data with each dotted key set to its value as is (as --data, --name and --init-from
    set theirs: a value never goes through YAML text, so any file name survives). A section that the data holds
    as a value is left for validation to name."""
    result = _deep_copy(raw)
    for key, value in values.items():
        _set_key(result, key.split("."), value, None)
    return result


def _set_key(node: dict, parts: list[str], value: Any, origin: str | None) -> None:
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            if origin is None:
                return  # config_from_dict reports "section 'data' must be a mapping"
            raise UserError(f"{origin}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def _deep_copy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _deep_copy(v) for k, v in raw.items()}
    return raw


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping from a file, with user-facing errors."""
    path = user_path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path} (pass an existing YAML file, e.g. configs/ihello.yaml)")
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise UserError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values, got {type(raw).__name__}")
    return raw


def read_config_file(path: str | Path) -> dict:
    """A config file's raw data, with each relative path it names for the run to read (data.path, init_from)
    made relative to the file's folder, as docker-compose and tsconfig read theirs; the paths where the run
    writes (log.dir, data.cache) stay relative to the current folder (docs/paths.md)."""
    raw = read_yaml(path)
    folder = Path(os.path.abspath(user_path(path).parent))  # the folder as named, links not resolved
    for keys in _input_path_keys(Config):
        node = raw
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if isinstance(value, str):
            node[keys[-1]] = relative_to_folder(value, folder)
        elif isinstance(value, list):
            node[keys[-1]] = [relative_to_folder(v, folder) if isinstance(v, str) else v for v in value]
    return raw


def _input_path_keys(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The keys (as paths of names) of the fields declared path="input"."""
    hints, keys = _field_types(cls), []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _input_path_keys(hints[f.name], (*prefix, f.name))
        elif f.metadata.get("path") == "input":
            keys.append((*prefix, f.name))
    return keys


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (or defaults when path is None), apply overrides and validate. Relative paths in the
    file follow read_config_file's rule; those in overrides are relative to the current folder."""
    raw = read_config_file(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, list(overrides)))


def config_yaml(cfg: Config) -> str:
    """The resolved config as the YAML text of a run folder's config.yaml."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what `charrnn train --config` reads back)."""
    Path(path).write_text(config_yaml(cfg), encoding="utf-8")
