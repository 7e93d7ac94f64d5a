"""Exact FP32 rewrites applied before INT8 calibration, so per-tensor scales fit the signal.

Symmetric per-tensor INT8 spends its 255 steps on ``[-max|x|, max|x|]``. When a tensor is
mostly a constant offset (a CLIP image tower's class token: 98% of its energy is the same
for every image, measured on face-expclip), the steps cover the offset and the
image-dependent part gets a few of them. Two rewrites, exact up to float rounding, fix that:

- :func:`fold_linear_chains`: ``(x @ W1) @ W2`` -> ``x @ (W1 @ W2)`` when the middle tensor
  has no other reader (CLIP's ``visual_projection`` then the projection head), so the
  offset-dominated middle tensor is never quantised.
- :func:`center_layernorm_outputs`: a LayerNormalization read only by MatMuls (and Shape)
  gets its bias lowered by the calibration mean ``z`` of its output, and each MatMul gets
  ``z @ W`` back in its bias Add (or in a new Add). This is the *shifting* half of
  Outlier Suppression+ (Wei et al. 2023); SmoothQuant's channel *scaling* was measured too
  and did not help (no channel outliers: max/median channel range 1.2-2.3).

Renamed tensors keep the rule "an original tensor name always holds its original values":
shifted values get new names (``..._centered``), so a range cache never gives an original
name the range of a centred tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from runtimes.onnxruntime_backend import cpu_session

Feed = dict[str, np.ndarray]

FOLD = "fold_linear_chains"
CENTER = "center_layernorm_outputs"
# Consumers that read only a tensor's shape, so renaming the tensor changes nothing for them.
_SHAPE_READERS = ("Shape",)


class _Graph:
    """Lookups over one graph: producers, readers, and constants (through Identity nodes)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` (an initializer, maybe behind Identity), else None.

        The exporter shares equal initializers through Identity nodes (every LayerNorm's
        all-ones scale is one tensor), so values are read here and never edited in place.
        """
        while name not in self.inits and name in self.producer:
            node = self.producer[name]
            if node.op_type != "Identity":
                return None
            name = node.input[0]
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def add_const(self, name: str, value: np.ndarray) -> str:
        """A new float32 initializer (unique name); shared originals stay untouched."""
        unique, n = name, 0
        while unique in self.inits:
            n += 1
            unique = f"{name}_{n}"
        tensor = numpy_helper.from_array(np.asarray(value, np.float32), unique)
        self.graph.initializer.append(tensor)
        self.inits[unique] = tensor
        return unique

    def weight(self, node: onnx.NodeProto) -> np.ndarray | None:
        """The 2-D constant right operand of a MatMul, else None."""
        if node.op_type != "MatMul" or len(node.input) != 2:
            return None
        value = self.const(node.input[1])
        return value if value is not None and value.ndim == 2 else None


def fold_linear_chains(model: onnx.ModelProto) -> int:
    """Merge ``MatMul(MatMul(x, W1), W2)`` into ``MatMul(x, W1 @ W2)``; returns the count.

    Only when the middle tensor is read by the second MatMul alone and is no graph output,
    so nothing else sees it disappear.
    """
    folded = 0
    while True:
        g = _Graph(model)
        pair = next(
            (
                (first, g.readers[first.output[0]][0])
                for first in g.graph.node
                if g.weight(first) is not None
                and first.output[0] not in g.outputs
                and len(g.readers.get(first.output[0], [])) == 1
                and g.weight(g.readers[first.output[0]][0]) is not None
                and g.readers[first.output[0]][0].input[0] == first.output[0]
            ),
            None,
        )
        if pair is None:
            if folded:
                _drop_unused_initializers(model)
            return folded
        first, second = pair
        w1, w2 = g.weight(first), g.weight(second)
        assert w1 is not None and w2 is not None
        fused = (w1.astype(np.float64) @ w2.astype(np.float64)).astype(np.float32)
        second.input[1] = g.add_const(f"{second.name}.folded_weight", fused)
        second.input[0] = first.input[0]
        g.graph.node.remove(first)
        folded += 1


def _centerable(g: _Graph) -> list[tuple[onnx.NodeProto, list[onnx.NodeProto]]]:
    """LayerNorms over the last axis with constant bias, read only by constant-weight MatMuls
    (as their left operand) and shape readers."""
    found = []
    for node in g.graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 3:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        out = node.output[0]
        if axis != -1 or g.const(node.input[2]) is None or out in g.outputs:
            continue
        readers = g.readers.get(out, [])
        matmuls = [r for r in readers if g.weight(r) is not None and r.input[0] == out]
        others = [r for r in readers if r not in matmuls]
        if matmuls and all(r.op_type in _SHAPE_READERS and r.input[0] == out for r in others):
            found.append((node, matmuls))
    return found


def _output_means(model: onnx.ModelProto, names: list[str], feeds: Sequence[Feed]) -> dict:
    """Per-channel (last axis) mean of each named tensor over every feed and position."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = cpu_session(probe.SerializeToString())
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, dict(feed)), strict=True):
            rows = np.asarray(value, np.float64).reshape(-1, value.shape[-1])
            sums[name] = sums.get(name, 0.0) + rows.sum(axis=0)
            counts[name] = counts.get(name, 0) + rows.shape[0]
    return {name: (sums[name] / counts[name]).astype(np.float32) for name in names}


def _rename_output(node: onnx.NodeProto, new: str) -> str:
    """Give ``node``'s first output the name ``new``; returns the old name."""
    old = node.output[0]
    node.output[0] = new
    return old


def _compensate(g: _Graph, matmul: onnx.NodeProto, shift: np.ndarray) -> None:
    """Add ``shift @ W`` back after ``matmul`` (whose input is now centred)."""
    weight = g.weight(matmul)
    assert weight is not None
    back = (shift.astype(np.float64) @ weight.astype(np.float64)).astype(np.float32)
    old = _rename_output(matmul, f"{matmul.output[0]}_centered")
    readers = g.readers.get(old, [])
    if len(readers) == 1 and readers[0].op_type == "Add":
        add = readers[0]
        slot = next((i for i, x in enumerate(add.input) if x != old), None)
        bias = g.const(add.input[slot]) if slot is not None else None
        if bias is not None and np.broadcast_shapes(bias.shape, back.shape) == bias.shape:
            add.input[slot] = g.add_const(f"{add.name}.centered_bias", bias + back)
            add.input[1 - slot] = matmul.output[0]
            return
    # No constant bias to fold into: a new Add gives back the original name (maybe a graph
    # output) its original values.
    comp = g.add_const(f"{matmul.name}.centering", back)
    index = list(g.graph.node).index(matmul)
    node = helper.make_node(
        "Add", [matmul.output[0], comp], [old], name=f"{matmul.name}/centering_add"
    )
    g.graph.node.insert(index + 1, node)


def center_layernorm_outputs(model: onnx.ModelProto, feeds: Sequence[Feed]) -> int:
    """Centre every eligible LayerNorm output on its calibration mean (see module doc).

    Returns how many LayerNorms were centred; the model is unchanged when none qualify.
    """
    g = _Graph(model)
    plans = _centerable(g)
    if not plans:
        return 0
    means = _output_means(model, [ln.output[0] for ln, _ in plans], feeds)
    for ln, matmuls in plans:
        shift = means[ln.output[0]]
        bias = g.const(ln.input[2])
        assert bias is not None
        ln.input[2] = g.add_const(f"{ln.name}.centered_bias", bias - shift)
        old = _rename_output(ln, f"{ln.output[0]}_centered")
        for reader in g.readers.get(old, []):
            reader.input[0] = ln.output[0]
        for matmul in matmuls:
            _compensate(g, matmul, shift)
    return len(plans)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def prepare_for_int8(onnx_bytes: bytes, feeds: Sequence[Feed]) -> tuple[bytes, tuple[str, ...]]:
    """Fold linear chains, then centre LayerNorm outputs on ``feeds`` (calibration feeds only).

    Returns the rewritten model and the names of the rewrites that changed something;
    with none, the original bytes come back unchanged.
    """
    model = onnx.load_from_string(onnx_bytes)
    applied = []
    if fold_linear_chains(model):
        applied.append(FOLD)
    if center_layernorm_outputs(model, feeds):
        applied.append(CENTER)
    if not applied:
        return onnx_bytes, ()
    _drop_unused_initializers(model)  # the originals of rewritten constants
    onnx.checker.check_model(model)
    return model.SerializeToString(), tuple(applied)
