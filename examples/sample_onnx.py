"""Sample from a model written by `charrnn export --format onnx` with numpy and onnxruntime only (no torch, no charrnn).

    python examples/sample_onnx.py model.onnx --prime "ROMEO:" --length 300              # greedy
    python examples/sample_onnx.py model.onnx --prime "ROMEO:" --temperature 0.8 --seed 1

Greedy (no --temperature), it prints the same text as `charrnn sample RUN --prime ... --length ... --greedy`.
"""

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser(description="Sample text from a charrnn ONNX model.")
parser.add_argument("model")
parser.add_argument("--prime", help="text to start from (default: the first character of the training text)")
parser.add_argument("--length", type=int, default=500)
parser.add_argument("--temperature", type=float, help="sample at this temperature instead of greedy")
parser.add_argument("--seed", type=int)
args = parser.parse_args()

session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
vocab = json.loads(meta["vocab"])  # characters in index order
index = {ch: i for i, ch in enumerate(vocab)}
prime = args.prime or meta["first_char"]
if unknown := [ch for ch in prime if ch not in index]:
    sys.exit(f"character {unknown[0]!r} is not in the model's vocabulary")
# The state tensors (h, and c for an LSTM: [layers, batch, hidden]) start at zero; outputs return them in order.
state = {i.name: np.zeros([1 if d == "batch" else d for d in i.shape], np.float32) for i in session.get_inputs()[1:]}
rng = np.random.default_rng(args.seed)


def step(char_id: int) -> np.ndarray:
    logits, *new_state = session.run(None, {"ids": np.array([char_id], np.int64), **state})
    state.update(zip(state, new_state, strict=True))
    return logits[0]


for ch in prime[:-1]:
    step(index[ch])
x = index[prime[-1]]
out = [prime]
for _ in range(args.length):
    logits = step(x)
    if args.temperature is None:
        x = int(np.argmax(logits))
    else:
        p = np.exp((logits - logits.max()) / args.temperature)
        x = int(rng.choice(len(p), p=p / p.sum()))
    out.append(vocab[x])
print("".join(out))
