"""Backend registry, selection policy and input checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.device import CpuInfo, DeviceInfo, GpuInfo
from edge_sdk.errors import BackendError
from runtimes import available_backends, get_backend, open_graph, rank_candidates


def test_registry_has_ort_and_torch() -> None:
    names = [b.name for b in available_backends()]
    assert "ort-cpu" in names and "torch" in names
    assert names.index("ort-cpu") < names.index("torch")
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        get_backend("nope")


def test_cpu_ranking_picks_ort_cpu_and_explains_the_rest(face_bundle, device) -> None:
    ranked = rank_candidates(face_bundle.manifest, "classifier", device)
    usable = [c for c in ranked if c.usable]
    assert usable[0].backend == "ort-cpu"
    by_name = {c.backend: c for c in ranked}
    assert "CUDAExecutionProvider" in by_name["ort-cuda"].reason
    assert not by_name["torch"].usable
    assert ranked.index(usable[0]) == 0  # usable candidates come first


def test_gpu_device_without_cuda_provider_still_explains(face_bundle) -> None:
    gpu_device = DeviceInfo(
        cpu=CpuInfo("aarch64", 6, "Cortex-A78AE", ("asimd",)),
        gpus=(GpuInfo(0, "Orin (integrated GPU)", (8, 7), None, "jetson"),),
        ort_providers=("CPUExecutionProvider",),
    )
    ranked = rank_candidates(face_bundle.manifest, "pnet", gpu_device)
    assert ranked[0].backend == "ort-cpu"
    assert "lacks CUDAExecutionProvider" in {c.backend: c for c in ranked}["ort-cuda"].reason


def test_requested_precision_is_never_downgraded(face_bundle, device) -> None:
    with pytest.raises(BackendError, match="precision fp32 != requested int8"):
        open_graph(face_bundle, "classifier", device, precision="int8")


def test_torch_reference_on_request(face_bundle, device) -> None:
    session = open_graph(face_bundle, "classifier", device, backend="torch")
    assert session.backend == "torch"
    out = session.run({"image": np.zeros((2, 1, 64, 64), np.float32)})
    assert out["probabilities"].shape == (2, 7)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "needs input 'image'"),
        ({"image": np.zeros((1, 1, 64, 64), np.float64)}, "dtype float64"),
        ({"image": np.zeros((1, 64, 64), np.float32)}, "shape"),
        ({"image": np.zeros((1, 3, 64, 64), np.float32)}, "shape"),
        ({"image": np.zeros((65, 1, 64, 64), np.float32)}, "batch=65 outside"),
    ],
)
def test_session_refuses_bad_feeds(face_bundle, device, feeds, message: str) -> None:
    for backend in ("ort-cpu", "torch"):
        session = open_graph(face_bundle, "classifier", device, backend=backend)
        with pytest.raises(BackendError, match=message):
            session.run(feeds)


def test_corrupt_onnx_is_a_backend_error(face_bundle, device, tmp_path) -> None:
    import shutil

    from edge_sdk.bundle import ModelBundle, sha256_file

    target = tmp_path / "b"
    shutil.copytree(face_bundle.root, target)
    (target / "classifier.onnx").write_bytes(b"\x08\x01garbage")
    manifest = face_bundle.manifest
    artifacts = tuple(
        replace(a, sha256=sha256_file(target / a.path)) if a.path == "classifier.onnx" else a
        for a in manifest.artifacts
    )
    (target / "manifest.json").write_text(replace(manifest, artifacts=artifacts).to_json())
    with pytest.raises(BackendError, match="cannot open classifier.onnx"):
        open_graph(ModelBundle.load(target), "classifier", device)


def test_cpu_prefers_fp32_and_runs_int8_only_when_asked(face_bundle, tmp_path) -> None:
    """ONNX Runtime's CPU kernels ran our INT8 graphs slower, so CPU picks FP32 first."""
    import shutil

    from calibration.ort_int8 import calibrate_bundle
    from edge_sdk.device import DeviceProbe
    from runtimes.selection import open_graph, rank_candidates

    root = tmp_path / "bundle"
    shutil.copytree(face_bundle.root, root)
    rng = np.random.default_rng(0)
    feeds = {"classifier/image": rng.uniform(-1, 1, (40, 1, 64, 64)).astype(np.float32)}
    for graph, size in (("rnet", 24), ("onet", 48)):
        feeds[f"{graph}/image"] = rng.uniform(-1, 1, (40, 3, size, size)).astype(np.float32)
    np.savez(tmp_path / "feeds.npz", **feeds)
    bundle = calibrate_bundle(
        root, str(tmp_path / "feeds.npz"), force=True, cpu_int8="never"
    ).bundle
    assert not [a for a in bundle.manifest.artifacts if a.target == "cpu"]
    device = DeviceProbe().probe()
    first = next(c for c in rank_candidates(bundle.manifest, "classifier", device) if c.usable)
    assert (first.backend, first.artifact.precision) == ("ort-cpu", "fp32")
    session = open_graph(bundle, "classifier", device, precision="int8")
    assert session.precision == "int8"
    out = session.run({"image": feeds["classifier/image"][:2]})
    assert np.isfinite(next(iter(out.values()))).all()


def _with_cpu_int8(face_bundle, tmp_path):
    """A copy of the face bundle whose classifier also has a CPU-form INT8 artifact (the
    FP32 bytes under that label: selection reads only the manifest)."""
    import shutil

    from edge_sdk.bundle import BundleWriter, ModelBundle

    root = Path(shutil.copytree(face_bundle.root, tmp_path / "bundle"))
    bundle = ModelBundle.load(root)
    fp32 = next(a for a in bundle.manifest.artifacts_for("classifier") if a.format == "onnx")
    writer = BundleWriter.extending(bundle)
    writer.add(
        "classifier.int8-cpu.onnx",
        bundle.read_artifact(fp32),
        format="onnx",
        graph="classifier",
        precision="int8",
        target="cpu",
    )
    return writer.finish(bundle.manifest)


def test_cpu_backends_try_the_cpu_int8_form_first(face_bundle, device, tmp_path) -> None:
    bundle = _with_cpu_int8(face_bundle, tmp_path)
    usable = [c for c in rank_candidates(bundle.manifest, "classifier", device) if c.usable]
    assert (usable[0].backend, usable[0].artifact.path) == ("ort-cpu", "classifier.int8-cpu.onnx")
    assert "CPU kernels" in usable[0].reason
    assert usable[1].artifact.precision == "fp32"
    fp32 = open_graph(bundle, "classifier", device, precision="fp32")
    assert fp32.precision == "fp32"
    assert open_graph(bundle, "pnet", device).precision == "fp32"  # no CPU form: FP32


def test_gpu_providers_refuse_the_cpu_int8_form(face_bundle, tmp_path) -> None:
    from runtimes.onnxruntime_backend import OrtBackend

    bundle = _with_cpu_int8(face_bundle, tmp_path)
    gpu_device = DeviceInfo(
        cpu=CpuInfo("x86_64", 8, "Xeon", ("avx2",)),
        gpus=(GpuInfo(0, "NVIDIA RTX A2000", (8, 6), None, "procfs"),),
        ort_providers=("CPUExecutionProvider",),
    )
    # A GPU-kind backend on a provider this machine has, so only the artifact rule decides.
    gpu_kind = OrtBackend("gpu-kind", 5, "CPUExecutionProvider", needs_gpu=True)
    graph = bundle.manifest.graph("classifier")
    by_path = {a.path: a for a in bundle.manifest.artifacts_for("classifier")}
    refused = gpu_kind.supports(graph, by_path["classifier.int8-cpu.onnx"], gpu_device)
    assert not refused.ok and "CPU kernels" in refused.reason
    assert gpu_kind.supports(graph, by_path["classifier.onnx"], gpu_device).ok
