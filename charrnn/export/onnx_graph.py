"""`charrnn export --format onnx`: the model as a single-step ONNX graph, written node by node (no torch exporter).

    inputs   ids (int64, [batch]), h (float32, [layers, batch, hidden]) and, for an LSTM, c (same shape)
    outputs  logits (float32, [batch, vocab]), h_next and, for an LSTM, c_next

One step, not a sequence: on torch 2.13 the dynamo exporter, given a dynamic time axis, exports without error and
then fails or returns the example's length at any other length, and the legacy exporter is deprecated; a single
step sidesteps both and is what a sampler in any language needs. The vocabulary (a JSON list of characters, key
`vocab`) and the model's settings are in the model's metadata_props. Needs the `onnx` package (the export extra).
"""

from __future__ import annotations

import numpy as np

from charrnn.export.weights import StepWeights
from charrnn.safe_files import output_stamp

OPSET = 17
IR_VERSION = 8  # what onnxruntime 1.10 and later read


class _Graph:
    """Nodes and initializers, with fresh names for intermediate values."""

    def __init__(self, onnx, fp16: bool):
        self.onnx, self.fp16 = onnx, fp16
        self.nodes, self.initializers, self.count = [], [], 0

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        if out is None:
            self.count += 1
            out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def split(self, value: str, parts: int) -> list[str]:
        self.count += 1
        outs = [f"split_{self.count}_{i}" for i in range(parts)]
        self.nodes.append(self.onnx.helper.make_node("Split", [value], outs, axis=1))
        return outs

    def weight(self, name: str, array: np.ndarray) -> None:
        """A float32 initializer; stored as float16 with --weights fp16 and cast back to float32 in the graph."""
        if not self.fp16:
            self.initializers.append(self.onnx.numpy_helper.from_array(array.astype(np.float32), name))
            return
        self.initializers.append(self.onnx.numpy_helper.from_array(array.astype(np.float16), f"{name}_fp16"))
        self.op("Cast", f"{name}_fp16", out=name, to=self.onnx.TensorProto.FLOAT)

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name


def _cell(g: _Graph, w: StepWeights, k: int, gi: str, h: str, c: str | None) -> tuple[str, str | None]:
    """One layer's step: gi = the input side (W_ih x + b_in), h and c the layer's state -> its new h and c."""
    if w.cell == "gru":
        gh = g.op("Gemm", h, f"w_hh{k}", f"b_hh{k}", transB=1)
        (i_r, i_z, i_n), (h_r, h_z, h_n) = g.split(gi, 3), g.split(gh, 3)
        r = g.op("Sigmoid", g.op("Add", i_r, h_r))
        z = g.op("Sigmoid", g.op("Add", i_z, h_z))
        n = g.op("Tanh", g.op("Add", i_n, g.op("Mul", r, h_n)))
        return g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n))), None  # (1 - z) n + z h
    pre = g.op("Gemm", h, f"w_hh{k}", gi, transB=1)  # W_hh h + gi
    if w.cell == "rnn":
        return g.op("Relu" if w.nonlinearity == "relu" else "Tanh", pre), None
    i, f, gate, o = g.split(pre, 4)  # PyTorch's gate order
    c_next = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gate)))
    return g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c_next)), c_next


def build_model(w: StepWeights, metadata: dict[str, str], *, fp16: bool = False):
    """The single-step graph of `w` as an onnx.ModelProto, metadata as its metadata_props."""
    import onnx

    g = _Graph(onnx, fp16)
    for name, array in w.arrays.items():
        g.weight(name, array)
    layer_index = [g.constant(f"layer_{k}", np.array(k, dtype=np.int64)) for k in range(w.num_layers)]
    axis0 = g.constant("axis_0", np.array([0], dtype=np.int64))
    new = {name: [] for name in w.state_names}
    below = None
    for k in range(w.num_layers):
        h = g.op("Gather", "h", layer_index[k], axis=0)  # (batch, hidden)
        c = g.op("Gather", "c", layer_index[k], axis=0) if w.cell == "lstm" else None
        if k == 0 and w.has_table:
            gi = g.op("Gather", "table", "ids", axis=0)  # (batch, G*H): the character's row
        elif k == 0:
            gi = g.op("Gemm", g.op("Gather", "emb", "ids", axis=0), "w_ih0", "b_in0", transB=1)
        else:
            gi = g.op("Gemm", below, f"w_ih{k}", f"b_in{k}", transB=1)
        below, c_next = _cell(g, w, k, gi, h, c)
        new["h"].append(below)
        if c_next is not None:
            new["c"].append(c_next)
    g.op("Gemm", below, w.head_name, "head_b", transB=1, out="logits")
    for name, layers in new.items():
        g.op("Concat", *(g.op("Unsqueeze", t, axis0) for t in layers), axis=0, out=f"{name}_next")
    return _model(onnx, g, w, metadata)


def _model(onnx, g: _Graph, w: StepWeights, metadata: dict[str, str]):
    helper, FLOAT = onnx.helper, onnx.TensorProto.FLOAT
    state_shape = [w.num_layers, "batch", w.hidden_size]
    inputs = [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["batch"])]
    inputs += [helper.make_tensor_value_info(name, FLOAT, state_shape) for name in w.state_names]
    outputs = [helper.make_tensor_value_info("logits", FLOAT, ["batch", w.vocab_size])]
    outputs += [helper.make_tensor_value_info(f"{name}_next", FLOAT, state_shape) for name in w.state_names]
    graph = helper.make_graph(g.nodes, "charrnn_step", inputs, outputs, g.initializers,
                              doc_string="One character for each of `batch` streams: ids and the state in, the "
                                         "next character's logits and the next state out. Start from zeros.")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="charrnn",
                              ir_version=IR_VERSION,
                              # serialized before the graph: the stamp that lets a later --out replace the file
                              doc_string=output_stamp("export onnx"))
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model
