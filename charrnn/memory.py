"""How much memory a run needs, estimated from its config before anything is built, and the refusal of what
cannot fit: `model.hidden_size: 1000000` or `train.batch_size: 100000000` would otherwise end in an allocator
traceback (or the OOM killer) after minutes of building."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.config import Config, ModelConfig
from charrnn.errors import UserError

FLOAT_BYTES = 4  # weights, gradients, optimizer state and activations are fp32 (autocast adds, never removes)
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "rmsprop": 1, "sgd": 1}  # tensors per parameter (sgd: momentum)
_PER_SAMPLE_PYTHON_BYTES = 1024  # a sample's stop filter, text and list entries in `charrnn sample`


@dataclass(frozen=True)
class Estimate:
    """Bytes a training process needs, in two parts."""

    weights: int  # parameters, gradients and optimizer state
    activations: int  # one training step: inputs, recurrent states and logits kept for the backward pass
    workspace: int = 0  # copies the kernels make: oneDNN's reordered recurrent weights on a CPU

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.workspace


def parameter_count(vocab_size: int, m: ModelConfig) -> int:
    """The number of parameters CharRNN(vocab_size, m) has, computed without building it."""
    return sum(_parameter_parts(vocab_size, m).values())


def _parameter_parts(vocab_size: int, m: ModelConfig) -> dict[str, int]:
    gates_h = _GATES[m.cell] * m.hidden_size
    first_input = m.embedding_dim if m.encoding == "embedding" else vocab_size
    return {
        "embedding": vocab_size * m.embedding_dim if m.encoding == "embedding" else 0,
        # W_ih, W_hh and two biases per layer; the layers above the first read the hidden state
        "rnn": gates_h * (first_input + m.hidden_size + 2) + (m.num_layers - 1) * gates_h * (2 * m.hidden_size + 2),
        "head": (0 if m.tie_weights else m.hidden_size * vocab_size) + vocab_size,
    }


def training_memory(cfg: Config, vocab_size: int, world_size: int = 1, device: str = "cpu") -> Estimate:
    """What one training process needs: weights with gradients and optimizer state, one step's activations, and
    on a CPU the copy of the recurrent weights that oneDNN reorders for its kernels (forward and backward)."""
    m, t = cfg.model, cfg.train
    parts = _parameter_parts(vocab_size, m)
    workspace = parts["rnn"] * FLOAT_BYTES if torch.device(device).type == "cpu" else 0
    copies = 2 + _OPTIMIZER_STATES[t.optimizer] + (1 if t.ema else 0)  # weights, gradients, state, average
    weights = sum(parts.values()) * FLOAT_BYTES * copies
    rows = math.ceil(t.batch_size / world_size) * t.seq_length  # characters in one process's batch
    first_input = m.embedding_dim if m.encoding == "embedding" else vocab_size
    per_char = (first_input  # the encoded input
                + 2 * m.num_layers * m.hidden_size * (_GATES[m.cell] + 2)  # gates and states, forward and backward
                + 3 * vocab_size)  # logits, their log-softmax and its gradient
    activations = rows * (per_char * FLOAT_BYTES + 3 * 8)  # plus the int64 ids of inputs, targets and the gather
    return Estimate(weights, activations, workspace)


_SIZES = (("model", "hidden_size"), ("model", "num_layers"), ("model", "embedding_dim"), ("train", "batch_size"),
          ("train", "seq_length"))


def largest_setting(cfg: Config, vocab_size: int, world_size: int = 1) -> str:
    """The size setting to lower first, as `key=value`: the one whose default saves the most memory (then the one
    whose halving does, when all are at their defaults)."""
    defaults = Config()

    def total_with(section: str, name: str, value: int) -> int:
        changed = dataclasses.replace(getattr(cfg, section), **{name: max(1, value)})
        return training_memory(dataclasses.replace(cfg, **{section: changed}), vocab_size, world_size).total

    def saving(key: tuple[str, str]) -> tuple[int, int]:
        value = getattr(getattr(cfg, key[0]), key[1])
        return base - total_with(*key, getattr(getattr(defaults, key[0]), key[1])), base - total_with(*key, value // 2)

    base = training_memory(cfg, vocab_size, world_size).total
    sizes = [k for k in _SIZES if k != ("model", "embedding_dim") or cfg.model.encoding == "embedding"]
    section, name = max(sizes, key=saving)
    return f"{section}.{name}={getattr(getattr(cfg, section), name)}"


def sampling_memory(model: torch.nn.Module, num_samples: int) -> int:
    """Bytes that generating num_samples streams at once needs beyond the model itself."""
    m, vocab_size = model.cfg, model.vocab_size
    states = m.num_layers * m.hidden_size * (2 if m.cell == "lstm" else 1) * 2  # the state, and the next one
    per_sample = (states + _GATES[m.cell] * m.hidden_size + 5 * vocab_size) * FLOAT_BYTES  # gates, logits, probs, cdf
    return num_samples * (per_sample + _PER_SAMPLE_PYTHON_BYTES)


def device_memory(device: torch.device | str) -> int | None:
    """The memory a device has in all (CPU: RAM, or the container's limit if lower); None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "mps":
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        return recommended() if recommended else None
    try:
        limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limits.append(int(Path(path).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            continue
    return min(limits)


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.3g} EB"


def available_memory(device: torch.device | str) -> int | None:
    """The memory a new allocation can still get: on a CPU what the kernel reports available (MemAvailable), or
    what is left under the container's limit if less; on a GPU its free memory. None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return device_memory(device)
    free = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = int(Path("/sys/fs/cgroup/memory.max").read_text().strip())
        free.append(limit - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):  # no cgroup v2 limit ("max"), or not Linux
        pass
    return min(free) if free else device_memory(device)


# What a training process holds besides the estimate (torch itself, Python, the data), and the share the
# estimate may be short by: a run that would come this close to the end of the memory is refused.
PROCESS_BYTES = 600_000_000
MARGIN = 1.15


def check_training_fits(cfg: Config, vocab_size: int, device: torch.device | str, world_size: int = 1) -> None:
    """Refuse, before the model is built and before the run folder is touched, a config whose estimated memory
    (with a margin) exceeds what the device has available now: the kernel's OOM killer would end it mid-run."""
    free = available_memory(device)
    need = training_memory(cfg, vocab_size, world_size, str(torch.device(device)))
    if free is None or need.total * MARGIN + PROCESS_BYTES <= free:
        return
    onehot = (f"; a one-hot input over {vocab_size:,} characters is large, model.encoding: embedding needs less"
              if cfg.model.encoding == "onehot" and vocab_size > cfg.model.embedding_dim else "")
    copies = f", {human_bytes(need.workspace)} of kernel copies" if need.workspace else ""
    raise UserError(
        f"this config needs about {human_bytes(need.total)} of memory to train ({human_bytes(need.weights)} of "
        f"weights, gradients and optimizer state, {human_bytes(need.activations)} of activations a step{copies}), "
        f"more than the {human_bytes(free)} this {torch.device(device).type} has available; lower "
        f"{largest_setting(cfg, vocab_size, world_size)} first{onehot}")


def check_sampling_fits(model: torch.nn.Module, num_samples: int, device: torch.device | str) -> None:
    """Refuse a --num-samples whose streams cannot fit in memory at once."""
    capacity = device_memory(device)
    need = sampling_memory(model, num_samples)
    if capacity is not None and need > capacity:
        raise UserError(f"--num-samples {num_samples} needs about {human_bytes(need)} of memory at once, more than "
                        f"the {human_bytes(capacity)} this {torch.device(device).type} has; lower --num-samples")
