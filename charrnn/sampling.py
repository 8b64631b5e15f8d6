"""Text generation: prime, temperature, top-k, top-p, greedy, batched streams, stop strings.

Generation warms the hidden state on the prime once, then advances one character at a time
through the model's one-step path, so each character costs O(1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from charrnn.device import autocast
from charrnn.errors import UserError
from charrnn.model import CharRNN, expand_hidden
from charrnn.stepper import make_stepper
from charrnn.vocab import Vocab

_FLOAT32_MAX = torch.finfo(torch.float32).max


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise UserError(f"--temperature must be > 0, got {self.temperature}; use --greedy for argmax decoding")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: torch.Tensor, opts: SamplingOptions) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p to logits (N, V); excluded entries become -inf."""
    logits = logits.float()
    if opts.temperature != 1.0:
        # Shifted so that the largest logit is 0: scaled by 1/T the others can then only fall towards -inf. Unshifted,
        # a tiny T sends one row's logits to +inf and -inf together, and softmax makes that NaN.
        logits = logits - logits.amax(dim=-1, keepdim=True)
        scale = 1.0 / opts.temperature
        if scale <= _FLOAT32_MAX:
            logits = logits * scale
        else:  # T is too small to invert in float32: use its limit, the likeliest character(s)
            logits = torch.zeros_like(logits).masked_fill(logits < 0, float("-inf"))
    if opts.top_k is not None and opts.top_k < logits.size(-1):
        kth = torch.topk(logits, opts.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p is not None and opts.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it already does.
        drop_sorted = mass_before >= opts.top_p
        drop_sorted[..., 0] = False  # the likeliest always stays: a top_p below float32's range compares as 0
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose_next(logits: torch.Tensor, opts: SamplingOptions, generator: torch.Generator | None) -> torch.Tensor:
    """Pick the next character id for each row of logits (N, V) -> (N,)."""
    if opts.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, opts), dim=-1)
    # Inverse-CDF sampling: one uniform draw per row and a binary search, several times cheaper than
    # torch.multinomial on small batches. u lies in [0, total) and the search takes the first entry whose
    # cumulative mass exceeds u, so a zero-probability entry (cdf equal to its predecessor's) is never chosen.
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def check_request(vocab: Vocab, prime: str, length: int, num_samples: int, seed: int | None) -> None:
    """Refuse a request generation cannot serve (checked before any output: generate() is lazy)."""
    if not prime:
        raise UserError("the prime text is empty; pass at least one character with --prime")
    if length < 0 or num_samples < 1:
        raise UserError("--length must be >= 0 and --num-samples >= 1")
    if seed is not None and not 0 <= seed < 2**64:  # what torch.Generator takes
        raise UserError(f"--seed must be from 0 to 2**64 - 1, got {seed}")
    vocab.encode(prime)  # a character outside the vocabulary is named


def generate(model: CharRNN, vocab: Vocab, *, prime: str, length: int, opts: SamplingOptions = SamplingOptions(),
             num_samples: int = 1, seed: int | None = None, device: torch.device | str = "cpu",
             precision: str = "fp32") -> Iterator[list[str]]:
    """Yield, for each of `length` steps, the next character of each of the num_samples streams; the model
    runs under `precision` autocast (fp32, bf16, fp16: see device.inference_precision)."""
    check_request(vocab, prime, length, num_samples, seed)
    prime_ids = torch.from_numpy(vocab.encode(prime)).to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            step = make_stepper(model)
            hidden = None
            if len(prime_ids) > 1:  # warmed once, then shared: every sample starts from the same state
                with autocast(device, precision):
                    hidden = expand_hidden(model.advance(prime_ids[None, :-1]), num_samples)
            x = prime_ids[-1:].expand(num_samples).contiguous()
            state = step.start(hidden, num_samples, device)
            for _ in range(length):
                with autocast(device, precision):
                    logits, state = step(x, state)
                x = choose_next(logits, opts, generator)
                yield [vocab.chars[i] for i in x.tolist()]
    finally:
        if was_training:
            model.train()


_SIMPLE_ESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f",
                   "v": "\v", "'": "'", '"': '"'}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")


def decode_escapes(text: str, option: str = "--stop") -> str:
    """Python-style backslash escapes in a command-line string: \\n \\t \\r \\a \\b \\f \\v \\\\ \\' \\"
    \\xHH \\uHHHH \\UHHHHHHHH. Every other character, non-ASCII included, is kept as it is; a malformed or
    unknown escape is a UserError naming it."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = text[i + 1] if i + 1 < len(text) else ""
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
            continue
        if kind in _HEX_ESCAPES:
            width = _HEX_ESCAPES[kind]
            digits = text[i + 2:i + 2 + width]
            shown = text[i:i + 2 + width]
            if len(digits) < width or not set(digits) <= _HEX:
                raise UserError(f"{option}: the escape '{shown}' is incomplete: \\{kind} takes exactly {width} hex "
                                f"digits (e.g. \\{kind}{'0' * (width - 2)}41 for 'A'); write \\\\ for a backslash")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise UserError(f"{option}: the escape '{shown}' is not a Unicode character "
                                "(the largest is \\U0010FFFF; \\uD800-\\uDFFF are surrogates)")
            out.append(chr(code))
            i += 2 + width
            continue
        if not kind:
            raise UserError(f"{option}: the escape '\\' is incomplete: the text ends in a lone backslash; "
                            "write \\\\ for a backslash")
        raise UserError(f"{option}: unknown escape '{text[i:i + 2]}'; use \\n, \\t, \\xHH, \\uHHHH, "
                        "\\UHHHHHHHH, or \\\\ for a backslash")
    return "".join(out)


class StopFilter:
    """Streams generated text through, holding back just enough to cut it at the first `stop` string.

    The stop string may begin in the prime and end in the generated text: that counts (the printed sample
    would show it otherwise). The prime itself is never cut, and a stop string wholly inside it does not count.
    """

    def __init__(self, stop: str | None, prime: str = ""):
        self.stop, self.done = stop or None, False
        keep = len(self.stop) - 1 if self.stop else 0
        self.pending = prime[max(len(prime) - keep, 0):] if keep else ""  # the prime's tail: matched, never emitted
        self.held = len(self.pending)  # how many leading characters of pending belong to the prime

    def feed(self, text: str) -> str:
        """Return the text that is safe to emit now; after the stop string, nothing."""
        if self.done:
            return ""
        if self.stop is None:
            return text
        self.pending += text
        cut = self.pending.find(self.stop)
        if cut >= 0:
            self.done = True
            out, self.pending = self.pending[self.held:cut], ""
            return out
        emit_to = max(len(self.pending) - (len(self.stop) - 1), 0)
        out = self.pending[self.held:emit_to]
        self.pending = self.pending[emit_to:]
        self.held = max(self.held - emit_to, 0)
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending[self.held:]), ""
        return out


class Samples:
    """num_samples texts as they are generated: each starts with the prime and goes through its own StopFilter.
    Pieces are kept in lists and joined once, so a long sample costs linear time."""

    def __init__(self, prime: str, num_samples: int, stop: str | None):
        self.filters = [StopFilter(stop, prime) for _ in range(num_samples)]
        self.parts = [[prime] for _ in range(num_samples)]

    def add(self, chars: list[str]) -> list[str]:
        """Feed one generated character per sample; return what each sample may show now."""
        pieces = [f.feed(c) for f, c in zip(self.filters, chars, strict=True)]
        for part, piece in zip(self.parts, pieces, strict=True):
            part.append(piece)
        return pieces

    @property
    def done(self) -> bool:
        """Every sample has reached its stop string."""
        return all(f.done for f in self.filters)

    @property
    def stopped(self) -> list[bool]:
        return [f.done for f in self.filters]

    def finish(self) -> list[str]:
        """After the last add: the text each filter still held back (appended to the samples too)."""
        tails = [f.flush() for f in self.filters]
        for part, tail in zip(self.parts, tails, strict=True):
            part.append(tail)
        return tails

    def texts(self) -> list[str]:
        return ["".join(part) for part in self.parts]


class SampleStream:
    """The one sampling loop (`charrnn sample`, `Model.sample`/`Model.stream`, TensorBoard samples): iterating
    yields, per sample, the prime, then what each step lets it show, then what its StopFilter held back; joined,
    a sample's pieces are its text. After the loop: texts(), stopped, generated (characters drawn, all samples)."""

    def __init__(self, model: CharRNN, vocab: Vocab, *, prime: str, length: int,
                 opts: SamplingOptions = SamplingOptions(), num_samples: int = 1, seed: int | None = None,
                 stop: str | None = None, device: torch.device | str = "cpu", precision: str = "fp32"):
        check_request(vocab, prime, length, num_samples, seed)  # refused here, before any output
        self.prime, self.num_samples, self.generated = prime, num_samples, 0
        self._samples = Samples(prime, num_samples, stop)
        self._steps = generate(model, vocab, prime=prime, length=length, opts=opts, num_samples=num_samples,
                               seed=seed, device=device, precision=precision)

    def __iter__(self) -> Iterator[list[str]]:
        yield [self.prime] * self.num_samples
        for chars in self._steps:
            self.generated += self.num_samples
            yield self._samples.add(chars)
            if self._samples.done:
                break
        self._steps.close()
        yield self._samples.finish()

    @property
    def stopped(self) -> list[bool]:
        """Which samples ended at their stop string (rather than at the length)."""
        return self._samples.stopped

    def texts(self) -> list[str]:
        """Each sample's whole text, prime included (complete once the loop has ended)."""
        return self._samples.texts()


def sample_text(model: CharRNN, vocab: Vocab, *, prime: str, length: int, opts: SamplingOptions = SamplingOptions(),
                num_samples: int = 1, seed: int | None = None, stop: str | None = None,
                device: torch.device | str = "cpu", precision: str = "fp32") -> list[str]:
    """Whole samples (prime + generated, cut at `stop`: see StopFilter), for scripts and TensorBoard."""
    stream = SampleStream(model, vocab, prime=prime, length=length, opts=opts, num_samples=num_samples, seed=seed,
                          stop=stop, device=device, precision=precision)
    for _ in stream:
        pass
    return stream.texts()
