"""The exact FP32 rewrites applied before INT8 calibration (calibration.rewrites)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.quantize import quantize_graph
from calibration.rewrites import CENTER, FOLD, prepare_for_int8

ort = pytest.importorskip("onnxruntime")

C, T = 8, 5  # channels, tokens


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes: list, inits: list) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", T, C])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", T, C]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", T, "width"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _transformable() -> bytes:
    """Two LayerNorms sharing scale and bias through Identity (as the exporter writes them):
    one read by two MatMul+Add (q/k-like) and a Shape, one by a bias-free MatMul chain."""
    rng = np.random.default_rng(0)
    inits = [
        _const("ones", np.ones(C)),
        _const("zeros", np.zeros(C)),
        _const("w_q", rng.normal(0, 0.3, (C, C))),
        _const("w_k", rng.normal(0, 0.3, (C, C))),
        _const("b_q", rng.normal(0, 0.1, C)),
        _const("w_1", rng.normal(0, 0.3, (C, C))),
        _const("w_2", rng.normal(0, 0.3, (C, 6))),
    ]
    nodes = [
        helper.make_node("Identity", ["ones"], ["g2"]),
        helper.make_node("Identity", ["zeros"], ["b2"]),
        helper.make_node("LayerNormalization", ["x", "ones", "zeros"], ["ln1"], name="ln1"),
        helper.make_node("Shape", ["ln1"], ["ln1_shape"]),
        helper.make_node("MatMul", ["ln1", "w_q"], ["q"], name="q"),
        helper.make_node("Add", ["b_q", "q"], ["q_b"]),
        helper.make_node("MatMul", ["ln1", "w_k"], ["k"], name="k"),
        helper.make_node("Add", ["q_b", "k"], ["y"]),
        helper.make_node("LayerNormalization", ["y", "g2", "b2"], ["ln2"], name="ln2"),
        helper.make_node("MatMul", ["ln2", "w_1"], ["h"], name="first"),
        helper.make_node("MatMul", ["h", "w_2"], ["z"], name="second"),
    ]
    return _model(nodes, inits)


def _inputs(seed: int, count: int = 16) -> list[dict[str, np.ndarray]]:
    """Tokens with a large per-token, per-channel constant, as a CLIP class token has."""
    rng = np.random.default_rng(seed)
    offset = np.random.default_rng(42).normal(0, 3.0, (T, C))
    return [
        {"x": (offset + 0.2 * rng.normal(size=(1, T, C))).astype(np.float32)} for _ in range(count)
    ]


def _run(model: bytes, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return [session.run(["y", "z"], feed) for feed in feeds]


def test_rewrites_are_an_fp32_identity_and_change_the_weights() -> None:
    model = _transformable()
    rewritten, applied = prepare_for_int8(model, _inputs(1))
    assert applied == (FOLD, CENTER)
    for before, after in zip(_run(model, _inputs(2)), _run(rewritten, _inputs(2)), strict=True):
        for a, b in zip(before, after, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    graph = onnx.load_from_string(rewritten).graph
    nodes = {n.name: n for n in graph.node}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    original = {
        i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(model).graph.initializer
    }
    assert "first" not in nodes and nodes["second"].input[0] == "ln2_centered"  # folded
    fused = inits[nodes["second"].input[1]]
    np.testing.assert_allclose(fused, original["w_1"] @ original["w_2"], rtol=1e-5, atol=1e-6)
    assert "w_1" not in inits and "w_2" not in inits  # unused originals dropped
    for name in ("ln1", "ln2"):  # biases lowered by the mean, shared originals untouched
        assert nodes[name].output == [f"{name}_centered"]
        assert np.abs(inits[nodes[name].input[2]]).max() > 0.01
    np.testing.assert_array_equal(inits["zeros"], np.zeros(C))
    # original names keep original values: "q" is now the bias Add's centred input
    produced = {o for n in graph.node for o in n.output}
    assert nodes["q"].output == ["q_centered"] and "q" not in produced


def test_an_untransformable_graph_is_left_alone() -> None:
    """A LayerNorm also read by a residual Add, and MatMuls without constant weights."""
    rng = np.random.default_rng(0)
    inits = [
        _const("ones", np.ones(C)),
        _const("zeros", np.zeros(C)),
        _const("w", rng.normal(size=(C, C))),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ones", "zeros"], ["ln"], name="ln"),
        helper.make_node("MatMul", ["ln", "w"], ["m"], name="m"),
        helper.make_node("Add", ["ln", "m"], ["y"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["z"], name="scores"),
    ]
    model = _model(nodes, inits)
    rewritten, applied = prepare_for_int8(model, _inputs(1))
    assert applied == () and rewritten == model


def test_quantize_outputs_false_keeps_int8_off_op_outputs() -> None:
    model = _transformable()  # "z" is a MatMul's output and a graph output
    feeds = _inputs(3, count=16)
    quantised, _ = quantize_graph(model, feeds, "minmax", ("MatMul",), quantize_outputs=False)
    nodes = onnx.load_from_string(quantised).graph.node
    dequantised = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    matmuls = [n for n in nodes if n.op_type == "MatMul"]
    assert all(set(n.input) & dequantised for n in matmuls)  # inputs are quantised
    producers = {o: n.op_type for n in nodes for o in n.output}
    assert producers["z"] == "MatMul"  # the graph output is no DequantizeLinear
    default, _ = quantize_graph(model, feeds, "minmax", ("MatMul",))
    assert {n.output[0]: n.op_type for n in onnx.load_from_string(default).graph.node}[
        "z"
    ] == "DequantizeLinear"
