"""Backend registry, selection policy and input checks."""

from __future__ import annotations

from dataclasses import replace

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
    bundle = calibrate_bundle(root, str(tmp_path / "feeds.npz"), force=True).bundle
    device = DeviceProbe().probe()
    first = next(c for c in rank_candidates(bundle.manifest, "classifier", device) if c.usable)
    assert (first.backend, first.artifact.precision) == ("ort-cpu", "fp32")
    session = open_graph(bundle, "classifier", device, precision="int8")
    assert session.precision == "int8"
    out = session.run({"image": feeds["classifier/image"][:2]})
    assert np.isfinite(next(iter(out.values()))).all()
