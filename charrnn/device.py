"""Device selection and mixed-precision contexts."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from charrnn.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device must exist."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError("device 'mps' requested but MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def bf16_supported(device: torch.device, cell: str = "lstm") -> bool:
    """Whether bf16 autocast can run this cell here. CUDA needs bf16 support (native from sm80). On CPU an
    LSTM runs through oneDNN, which needs AVX-512 or better ("could not create a primitive descriptor" without);
    GRU and RNN run on ATen's own kernels, which take bf16 on any CPU (emulated, so not faster without native
    bf16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cell != "lstm" or cpu_runs_bf16_lstm()
    return False


def cpu_runs_bf16_lstm() -> bool:
    """Whether oneDNN can run a bf16 LSTM on this CPU: natively (avx512_bf16, AMX) or emulated (plain AVX-512)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_cpu_bf16() -> bool:
    """Whether this CPU computes in bf16 natively: avx512_bf16 or AMX on x86, the bf16 extension on Arm.
    oneDNN's own check also says yes for plain AVX-512, where bf16 is emulated and trains a 2x192 LSTM at 0.32x
    the speed of fp32 (benchmarks/precision.py on a 2-core Xeon with AVX-512 but no avx512_bf16). Where the
    CPU's flags cannot be read (not Linux), oneDNN's check decides."""
    flags = _cpu_flags()
    if flags is None:
        return cpu_runs_bf16_lstm()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _cpu_flags() -> set[str] | None:
    """The first processor's feature flags (x86 'flags', Arm 'Features') from /proc/cpuinfo; None where unread."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    """This CPU for benchmark rows: model name, torch's vector ISA, the bf16 flags it reports (Linux
    /proc/cpuinfo) and whether oneDNN computes bf16 natively here."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's lines
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "isa": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": [f for f in _BF16_FLAGS if f in flags], "native_bf16": native_cpu_bf16()}


def describe_cpu() -> str:
    """'AMD EPYC, AVX512, bf16 flags avx512_bf16 (native bf16)': one line for benchmark output."""
    info = cpu_info()
    flags = ", ".join(info["bf16_flags"]) or "none"
    native = "native bf16" if info["native_bf16"] else "no native bf16"
    return f"{info['model']}, {info['isa']}, bf16 flags {flags} ({native})"


def native_cuda_bf16(device: torch.device) -> bool:
    """Whether this GPU computes in bf16 natively: compute capability 8.0 (Ampere) or newer. Older GPUs may
    emulate bf16, slower than fp32, so 'auto' does not pick it there."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def _auto_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if native_cuda_bf16(device) else "fp32"
    if device.type == "cpu":
        return "bf16" if native_cpu_bf16() else "fp32"
    return "fp32"


def _check_precision(precision: str, device: torch.device, cell: str, setting: str, fp32_hint: str) -> str:
    """An explicit bf16 or fp16 that this device cannot run is a UserError (oneDNN would fail deep inside
    the LSTM, CPU autocast has no fp16 recurrent kernels)."""
    if precision == "bf16" and not bf16_supported(device, cell):
        hint = " (model.cell gru or rnn can use bf16 here)" if device.type == "cpu" else ""
        raise UserError(
            f"{setting} bf16 is not supported for model.cell {cell} on this {device.type.upper()} "
            f"({torch.backends.cpu.get_cpu_capability() if device.type == 'cpu' else device}); "
            f"{fp32_hint}{hint}"
        )
    if precision == "fp16" and device.type == "cpu":
        raise UserError(f"{setting} fp16 needs a GPU; on CPU use bf16 (where supported), auto or fp32")
    return precision


def resolve_precision(precision: str, device: torch.device, cell: str = "lstm") -> str:
    """The precision to train in: 'auto' takes bf16 where the hardware runs it natively (CUDA compute
    capability 8.0+, a CPU with avx512_bf16/AMX), else fp32; fp16 only when asked (with loss scaling)."""
    if precision == "auto":
        return _auto_precision(device)
    return _check_precision(precision, device, cell, "train.precision", "set train.precision: fp32 or auto")


INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def inference_precision(requested: str, device: torch.device, cell: str = "lstm") -> str:
    """The precision `eval`, `sample` and `inspect` run in: a property of the command and the device, never of
    how the run was trained (checkpoints hold fp32 weights). 'auto' is what train.precision: auto picks here
    (bf16 where native, else fp32); bf16 or fp16 that this device cannot run is a UserError."""
    requested = (requested or "fp32").strip().lower()
    if requested not in INFERENCE_PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return _auto_precision(device)
    return _check_precision(requested, device, cell, "--precision", "use --precision fp32 (the default)")


def emulated_bf16_note(precision: str, device: torch.device, cell: str) -> str | None:
    """A note when bf16 would run emulated (a CPU without native bf16: an LSTM on plain AVX-512 measured about 3x
    slower than fp32, GRU/RNN on AVX2 about 30x)."""
    if precision != "bf16" or device.type != "cpu" or native_cpu_bf16():
        return None
    factor = "3x" if cell == "lstm" else "several times"
    return (f"note: this CPU has no native bf16 (avx512_bf16 or AMX), so bf16 {cell.upper()} training is emulated "
            f"and about {factor} slower than fp32; set train.precision: auto or fp32")


def autocast(device: torch.device | str, precision: str):
    """torch.autocast for bf16/fp16; a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])
