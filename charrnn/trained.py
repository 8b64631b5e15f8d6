"""A trained model, loaded from a run folder or a checkpoint file: what `sample`, `eval`, `info`, `inspect`,
`export` and the Python API (`charrnn.load`) start from. Loading never imports the training loop.

`Model` is also the Python API's face of a run: `sample` and `stream` are the `charrnn sample` loop,
`evaluate` is `charrnn eval`'s scoring, and `step` drives the hidden state by hand, one character at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from charrnn.config import Config, config_from_dict
from charrnn.device import inference_precision, resolve_device
from charrnn.errors import UserError
from charrnn.evaluate import Metrics, evaluate
from charrnn.model import CharRNN, Hidden
from charrnn.run.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.sampling import SampleStream, SamplingOptions
from charrnn.stepper import GATES, make_stepper
from charrnn.vocab import Vocab

_TOO_SHORT = "scoring needs at least 2 characters (each is predicted from the ones before it)"


@dataclass(frozen=True)
class State:
    """The hidden state after some characters, as nn.RNN / nn.GRU / nn.LSTM hold it for one stream: `hidden` is
    (L, 1, H), or (h, c) for an LSTM; `gates` maps each gate's name (input, forget, output; reset, update) to its
    activations (L, H) while reading the last character ({} for a plain RNN or before any character)."""

    hidden: Hidden
    gates: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def h(self) -> torch.Tensor:
        """Every layer's hidden state h (L, H)."""
        return (self.hidden[0] if isinstance(self.hidden, tuple) else self.hidden)[:, 0]

    @property
    def c(self) -> torch.Tensor | None:
        """An LSTM's cell state c (L, H); None for RNN and GRU."""
        return self.hidden[1][:, 0] if isinstance(self.hidden, tuple) else None


@dataclass(repr=False)
class Model:
    """A trained charrnn model: the network (`net`, in eval mode), its vocabulary and config, and where it came
    from (`run`, `checkpoint`) with the checkpoint's progress record (`state`: step, best_val, val, ...).

    Example:
        >>> m = charrnn.load("runs/ihello")
        >>> m.sample("h", 6, greedy=True)
        'hihello'
    """

    net: CharRNN
    vocab: Vocab
    config: Config
    run: Path
    checkpoint: Path
    state: dict
    device: torch.device

    def __repr__(self) -> str:
        cfg = self.config.model
        encoding = f"embedding {cfg.embedding_dim}" if cfg.encoding == "embedding" else "one-hot"
        return (f"<charrnn.Model {cfg.cell} {cfg.num_layers}x{cfg.hidden_size}, {encoding}, {len(self.vocab)} "
                f"characters, step {self.state.get('step', '?')}, from {self.checkpoint}>")

    @property
    def first_char(self) -> str:
        """The character the run's text starts with: the prime when none is given."""
        return self.state.get("first_char") or self.vocab.chars[0]

    # -- sampling: one loop (sampling.SampleStream) serves these and `charrnn sample` -----------------------
    def sample_stream(self, prime: str = "", length: int = 200, *, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, greedy: bool = False, seed: int | None = None,
                      num_samples: int = 1, stop: str | None = None, precision: str = "fp32") -> SampleStream:
        """The samples as they are generated (see `sample` for the options): iterate it for each sample's next
        piece of text; afterwards `.texts()`, `.stopped` and `.generated`.

        Example:
            >>> stream = m.sample_stream("h", 6, greedy=True, num_samples=2)
            >>> for pieces in stream: pass
            >>> stream.texts()
            ['hihello', 'hihello']
        """
        from charrnn.memory import check_sampling_fits

        opts = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
        precision = inference_precision(precision, self.device, self.config.model.cell)
        check_sampling_fits(self.net, num_samples, self.device)
        return SampleStream(self.net, self.vocab, prime=prime or self.first_char, length=length, opts=opts,
                            num_samples=num_samples, seed=seed, stop=stop or None, device=self.device,
                            precision=precision)

    def sample(self, prime: str = "", length: int = 200, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False, seed: int | None = None, num_samples: int = 1,
               stop: str | None = None, precision: str = "fp32") -> str | list[str]:
        """The prime followed by `length` generated characters, as `charrnn sample` prints it with the same
        options (an empty prime is the run's first character); a list of num_samples texts when it is above 1.
        temperature > 0 (lower: more conservative), top_k / top_p (nucleus) narrow the choice, greedy takes the
        likeliest character, seed makes it reproducible, stop ends a sample at that string.

        Example:
            >>> m.sample("h", 6, greedy=True)
            'hihello'
            >>> m.sample("h", 6, seed=1, temperature=0.8, num_samples=2)
            ['hihello', 'hihello']
        """
        stream = self.sample_stream(prime, length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                    seed=seed, num_samples=num_samples, stop=stop, precision=precision)
        for _ in stream:
            pass
        texts = stream.texts()
        return texts[0] if num_samples == 1 else texts

    def stream(self, prime: str = "", length: int = 200, **options) -> Iterator[str]:
        """One sample's text piece by piece as it is generated (the prime first); options as for `sample`.

        Example:
            >>> for piece in m.stream("h", 6, greedy=True):
            ...     print(piece, end="")
            hihello
        """
        if options.get("num_samples", 1) != 1:
            raise UserError("stream() yields one sample; use sample_stream(..., num_samples=N) for several")
        for pieces in self.sample_stream(prime, length, **options):
            if pieces[0]:
                yield pieces[0]

    # -- scoring --------------------------------------------------------------------------------------------
    def evaluate(self, text: str | np.ndarray, *, precision: str = "fp32") -> Metrics:
        """Loss (nats/char), bpc, perplexity and accuracy of predicting each character of `text` from the ones
        before it: the numbers `charrnn eval --data FILE` gives for a file holding that text. `text` may also be
        ids already encoded with this vocabulary.

        Example:
            >>> m.evaluate("hihello").bpc < 0.5
            True
        """
        ids = self.vocab.encode(text) if isinstance(text, str) else text
        if len(ids) < 2:
            raise UserError(f"the text holds {len(ids)} character; {_TOO_SHORT}")
        precision = inference_precision(precision, self.device, self.config.model.cell)
        return evaluate(self.net, ids, device=self.device, precision=precision)

    # -- driving the hidden state by hand ---------------------------------------------------------------------
    def start(self) -> State:
        """The state before any character: zeros, as nn.RNN / GRU / LSTM start when given no hidden state.

        Example:
            >>> m.start().h.shape
            torch.Size([1, 32])
        """
        return State(self.net.init_hidden(1, self.device))

    @torch.no_grad()
    def step(self, char: str | int, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Read one character (or its id) from `state` (None: the start) and return the next character's
        probabilities (V,) and the state after it, through the sampler's one-step path (stepper.Stepper).

        Example:
            >>> probs, state = m.step("h")
            >>> m.vocab.chars[int(probs.argmax())]
            'i'
            >>> probs, state = m.step("i", state)
        """
        if isinstance(char, str):
            if len(char) != 1:
                raise UserError(f"step() reads one character at a time, got {len(char)}: {char[:20]!r}")
            ids = self.vocab.encode(char)
        else:
            if not 0 <= int(char) < len(self.vocab):
                raise UserError(f"character id {char} is outside the vocabulary (0 to {len(self.vocab) - 1})")
            ids = np.array([int(char)])
        stepper = make_stepper(self.net)  # built from the current weights each time: a learner may change them
        state = state if state is not None else self.start()
        gates: list = []
        logits, after = stepper(torch.as_tensor(ids, device=self.device), stepper.start(state.hidden, 1, self.device),
                                gates)
        names = GATES[self.config.model.cell]
        per_gate = torch.stack(gates).view(len(gates), len(names), -1).transpose(0, 1) if names else ()  # (G, L, H)
        gates_by_name = dict(zip(names, per_gate, strict=True))
        return torch.softmax(logits[0].float(), dim=-1), State(stepper.to_hidden(after), gates_by_name)  # (L, 1, H)


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
    or the path of a checkpoint file; device: cpu, cuda, cuda:N, mps or auto.

    Example:
        >>> m = charrnn.load("runs/ihello")
        >>> m.vocab.decode(m.vocab.encode("hello"))
        'hello'
    """
    run = Path(run)
    dev = device if isinstance(device, torch.device) else resolve_device(device or "cpu")
    path = resolve_checkpoint(run, checkpoint)
    state = load_checkpoint(path)
    net, vocab, cfg = model_from_checkpoint(state, dev)
    progress = {k: v for k, v in state.items() if k not in ("model", "optimizer", "scaler", "hidden")}
    return Model(net=net, vocab=vocab, config=cfg, run=run, checkpoint=path, state=progress, device=dev)
