"""On a device without torch, verify compares every runtime with PyTorch outputs the bundle
recorded at export, not with another runtime."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_sdk.bundle import MANIFEST_NAME, ModelBundle, sha256_file
from edge_sdk.errors import BackendError, BundleError
from edge_sdk.reference_outputs import decode_examples, reference_path
from runtimes.base import get_backend

# Runs `edge-sdk verify BUNDLE --json` with every `import torch` failing.
NO_TORCH_VERIFY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
from edge_sdk.cli import main
sys.argv = ["edge-sdk", "verify", sys.argv[1], "--json"]
try:
    main()
finally:
    assert "torch" not in sys.modules
"""


def _verify_without_torch(root: Path) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_VERIFY, str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def _rehash(root: Path) -> None:
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    for artifact in data["artifacts"]:
        artifact["sha256"] = sha256_file(root / artifact["path"])
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def test_verify_without_torch_uses_the_recorded_pytorch_outputs(face_bundle) -> None:
    code, result = _verify_without_torch(face_bundle.root)
    assert code == 0, result
    graphs = {g.name for g in face_bundle.manifest.graphs}
    assert set(result["references"]) == graphs
    assert all(r.startswith("torch-recorded/fp32") for r in result["references"].values())
    compared = {(c["graph"], c["backend"]) for c in result["candidates"]}
    assert {(g, "ort-cpu") for g in graphs} <= compared


def test_recorded_truth_catches_a_wrong_onnx_model(face_bundle, tmp_path: Path) -> None:
    root = Path(shutil.copytree(face_bundle.root, tmp_path / "bundle"))
    model = onnx.load(str(root / "classifier.onnx"))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(largest).astype(np.float32)
    largest.CopyFrom(numpy_helper.from_array(values * 1.01, largest.name))
    onnx.save(model, str(root / "classifier.onnx"))
    _rehash(root)
    code, result = _verify_without_torch(root)
    assert code == 1
    failed = [c for c in result["candidates"] if c["graph"] == "classifier" and not c["passed"]]
    assert failed and result["references"]["classifier"].startswith("torch-recorded")


def test_recorded_session_answers_only_recorded_inputs(face_bundle) -> None:
    graph = face_bundle.manifest.graph("classifier")
    (artifact,) = [
        a for a in face_bundle.manifest.artifacts_for("classifier") if a.format == "reference"
    ]
    session = get_backend("torch-recorded").open(face_bundle, graph, artifact)
    example = session.examples[0]
    got = session.run(example.inputs)
    assert np.array_equal(got["probabilities"], example.outputs["probabilities"])
    with pytest.raises(BackendError, match="no PyTorch output was recorded"):
        session.run({"image": example.inputs["image"] + 1e-3})


@pytest.mark.parametrize("tamper", ["dtype", "extra", "missing", "not-npz"])
def test_tampered_recorded_outputs_are_refused(face_bundle, tamper: str) -> None:
    graph = face_bundle.manifest.graph("classifier")
    data = (face_bundle.root / reference_path("classifier")).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if tamper == "dtype":
        arrays["e0.out.probabilities"] = arrays["e0.out.probabilities"].astype(np.float64)
    elif tamper == "extra":
        arrays["e0.out.secret"] = np.zeros(3, np.float32)
    elif tamper == "missing":
        del arrays["e0.in.image"]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = b"PK\x03\x04 not a zip" if tamper == "not-npz" else buffer.getvalue()
    with pytest.raises(BundleError):
        decode_examples(payload, graph, "classifier.reference.npz")


def test_every_exported_graph_carries_its_recorded_outputs(face_bundle) -> None:
    bundle = ModelBundle.load(face_bundle.root)
    for graph in bundle.manifest.graphs:
        artifacts = bundle.manifest.artifacts_for(graph.name)
        (artifact,) = [a for a in artifacts if a.format == "reference"]
        examples = decode_examples(bundle.read_artifact(artifact), graph, artifact.path)
        assert len(examples) >= 2
