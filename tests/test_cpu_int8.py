"""The CPU INT8 form: U8S8 over every op, kept only where it passes the gate and pays."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from calibration.cpu_int8 import MIN_SPEEDUP, decide, median_latencies
from calibration.gate import GateThresholds
from calibration.ort_int8 import calibrate_bundle
from calibration.quantize import quantize_graph
from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import CalibrationError, EdgeSDKError
from runtimes.onnxruntime_backend import cpu_session


def test_decide_keeps_only_passing_forms_that_pay() -> None:
    assert decide(True, MIN_SPEEDUP + 0.2, "auto")[0]
    kept, reason = decide(True, 0.8, "auto")
    assert not kept and "FP32 is as fast" in reason
    assert decide(True, 0.8, "always")[0]
    assert decide(False, 3.0, "always") == (False, "failed the accuracy gate")
    assert not decide(True, 3.0, "never")[0]
    with pytest.raises(CalibrationError, match="unknown CPU INT8 mode 'sometimes'"):
        decide(True, 3.0, "sometimes")


def _classifier(face_bundle: ModelBundle) -> bytes:
    artifacts = face_bundle.manifest.artifacts_for("classifier")
    return face_bundle.read_artifact(next(a for a in artifacts if a.format == "onnx"))


def _feeds(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"image": rng.uniform(-1, 1, (1, 1, 64, 64)).astype(np.float32)} for _ in range(count)]


def _quantised_inputs(model: bytes) -> tuple[set[str], set[int]]:
    """Op types that read a DequantizeLinear output, and the zero-point element types."""
    graph = onnx.load_from_string(model).graph
    dequantised = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    readers = {n.op_type for n in graph.node if set(n.input) & dequantised}
    inits = {i.name: i for i in graph.initializer}
    zero_points = {
        inits[n.input[2]].data_type
        for n in graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    }
    return readers, zero_points


def test_cpu_form_is_u8s8_over_every_op(face_bundle) -> None:
    fp32, feeds = _classifier(face_bundle), _feeds(12)
    tensorrt, _ = quantize_graph(
        fp32, feeds, "minmax", ("Conv",), quantize_outputs=False, form="tensorrt"
    )
    cpu, _ = quantize_graph(fp32, feeds, "minmax", (), form="cpu")
    trt_readers, trt_zero = _quantised_inputs(tensorrt)
    cpu_readers, cpu_zero = _quantised_inputs(cpu)
    assert trt_zero == {onnx.TensorProto.INT8} and cpu_zero == {onnx.TensorProto.UINT8}
    assert trt_readers == {"Conv"}
    assert {"Conv", "Add"} <= cpu_readers  # the integer chain continues past the convs
    with pytest.raises(EdgeSDKError, match="unknown INT8 form 'gpu'"):
        quantize_graph(fp32, feeds, "minmax", (), form="gpu")


def test_latencies_are_medians_per_session(face_bundle) -> None:
    sessions = [cpu_session(_classifier(face_bundle)) for _ in range(2)]
    times = median_latencies(sessions, _feeds(4))
    assert len(times) == 2 and all(t > 0 for t in times)


def _npz(tmp_path: Path) -> str:
    rng = np.random.default_rng(1)
    feeds = {"classifier/image": rng.uniform(-1, 1, (40, 1, 64, 64)).astype(np.float32)}
    for graph, size in (("rnet", 24), ("onet", 48)):
        feeds[f"{graph}/image"] = rng.uniform(-1, 1, (40, 3, size, size)).astype(np.float32)
    np.savez(tmp_path / "feeds.npz", **feeds)
    return str(tmp_path / "feeds.npz")


def test_cpu_form_is_recorded_and_never_left_stale(face_bundle, tmp_path) -> None:
    root = Path(shutil.copytree(face_bundle.root, tmp_path / "bundle"))
    data = _npz(tmp_path)
    # Random images are no data for an accuracy judgement; an open gate lets the forms be
    # kept, which is what this test is about (the gate itself: test_int8_families).
    open_gate = GateThresholds(min_agreement=0.0, max_prob_diff=1.0, max_ccc_delta=1.0,
                               min_cosine=-1.0)
    result = calibrate_bundle(root, data, force=True, cpu_int8="always", thresholds=open_gate)
    for graph in result.graphs:
        trial = graph.cpu
        assert trial is not None and trial.fp32_ms > 0 and trial.int8_ms > 0
        assert trial.kept == trial.passed  # "always": every passing form is kept
        recorded = result.record.graphs[graph.graph]["cpu"]
        assert recorded["kept"] == trial.kept and recorded["speedup"] == round(trial.speedup, 3)
        path = root / f"{graph.graph}.int8-cpu.onnx"
        cpu = [a for a in result.bundle.manifest.artifacts_for(graph.graph) if a.target == "cpu"]
        assert path.exists() == trial.kept == bool(cpu)
    kept = [g.graph for g in result.graphs if g.cpu and g.cpu.kept]
    assert kept == [g.graph for g in result.graphs]
    again = calibrate_bundle(root, data, force=True, cpu_int8="never")
    assert all(g.cpu is None for g in again.graphs)
    assert not [a for a in again.bundle.manifest.artifacts if a.target == "cpu"]
    assert not list(root.glob("*.int8-cpu.onnx"))
    ModelBundle.load(root)  # every hash still matches


def test_a_cpu_form_that_cannot_be_made_leaves_the_rest(face_bundle, tmp_path, monkeypatch,
                                                       caplog) -> None:
    """The CPU form is optional: a quantiser failure on it costs only the form itself."""
    import calibration.ort_int8 as ort_int8

    real = ort_int8.quantize_graph

    def failing_cpu_form(*args, **kwargs):
        if kwargs.get("form") == "cpu":
            raise AttributeError("'NoneType' object has no attribute 'dims'")
        return real(*args, **kwargs)

    monkeypatch.setattr(ort_int8, "quantize_graph", failing_cpu_form)
    root = Path(shutil.copytree(face_bundle.root, tmp_path / "bundle"))
    result = calibrate_bundle(root, _npz(tmp_path), force=True, cpu_int8="always")
    assert all(g.cpu is None for g in result.graphs)
    assert all("cpu" not in record for record in result.record.graphs.values())
    assert {a.path for a in result.bundle.manifest.artifacts if a.precision == "int8"} >= {
        "classifier.int8.onnx"
    }
    assert "CPU INT8 form not made (AttributeError" in caplog.text


def test_unknown_mode_is_refused_before_any_work(face_bundle, tmp_path) -> None:
    with pytest.raises(CalibrationError, match="unknown CPU INT8 mode 'sometimes'"):
        calibrate_bundle(face_bundle.root, _npz(tmp_path), cpu_int8="sometimes")
    artifacts = ModelBundle.load(face_bundle.root).manifest.artifacts
    assert not [a for a in artifacts if a.precision == "int8"]
