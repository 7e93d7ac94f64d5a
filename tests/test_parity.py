"""Exported ONNX graphs and the whole pipeline agree with the PyTorch reference."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.parity import check_parity
from edge_sdk.pipelines.face import FacePipeline
from edge_sdk.preprocess.face import face_tensor
from runtimes.selection import open_graph
from tests.conftest import ASTRONAUT_FACE, iou

GRAPHS = ("pnet", "rnet", "onet", "classifier")


def _random_feed(bundle: ModelBundle, graph: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    spec = bundle.manifest.graph(graph).inputs[0]
    shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
    return {spec.name: np.random.default_rng(7).uniform(-1, 1, shape).astype(np.float32)}


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize(
    "sizes",
    [
        {"batch": 1, "height": 12, "width": 12},
        {"batch": 9, "height": 97, "width": 203},
        {"batch": 64, "height": 360, "width": 241},
    ],
)
def test_onnx_matches_torch(face_bundle, device: DeviceInfo, graph: str, sizes) -> None:
    ort = open_graph(face_bundle, graph, device, backend="ort-cpu")
    ref = open_graph(face_bundle, graph, device, backend="torch")
    feeds = _random_feed(face_bundle, graph, sizes)
    got, want = ort.run(feeds), ref.run(feeds)
    assert set(got) == set(want)
    kinds = face_bundle.manifest.graph(graph).output_kinds()
    for name in want:
        assert got[name].shape == want[name].shape
        check = check_parity(kinds[name], want[name], got[name])
        assert check.passed, (name, check.describe())
    if graph == "classifier":
        assert (got["probabilities"].argmax(1) == want["probabilities"].argmax(1)).all()


def test_classifier_parity_on_the_real_face(face_bundle, device, astronaut) -> None:
    batch = face_tensor(
        astronaut, np.array([ASTRONAUT_FACE]), face_bundle.manifest.preprocessing["classifier"]
    )
    ort = open_graph(face_bundle, "classifier", device).run({"image": batch})["probabilities"]
    ref = open_graph(face_bundle, "classifier", device, backend="torch").run({"image": batch})
    assert check_parity("probabilities", ref["probabilities"], ort).passed
    assert ort.argmax() == ref["probabilities"].argmax() == 3  # happy


def test_pipeline_boxes_match_torch_pipeline(face_bundle, device, astronaut) -> None:
    ort = FacePipeline(face_bundle, device).predict(astronaut)
    ref = FacePipeline(face_bundle, device, backend="torch").predict(astronaut)
    assert ort.backends["pnet"] == "ort-cpu/fp32" and ref.backends["pnet"] == "torch/fp32"
    assert len(ort.faces) == len(ref.faces) == 1
    for a, b in zip(ort.faces, ref.faces, strict=True):
        assert iou(a.box, b.box) >= 0.99
        assert a.label == b.label
        assert np.allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4
        )
        assert np.allclose(a.landmarks, b.landmarks, atol=0.5)


@pytest.mark.parametrize("graph", ("pnet", "rnet", "onet"))
def test_detector_graphs_use_the_layout_friendly_forms(face_bundle, graph: str) -> None:
    """PReLU, the face softmax and the Caffe-order flatten are exported in exact forms that
    ORT keeps in its blocked layout (see edge_sdk.models.face_fer7.mtcnn); a PRelu, Softmax or
    Transpose node would put it back on the slow path."""
    import onnx

    artifact = next(a for a in face_bundle.manifest.artifacts_for(graph) if a.format == "onnx")
    model = onnx.load_from_string(face_bundle.read_artifact(artifact))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"PRelu", "Softmax", "Transpose", "Shape"}, ops
    assert "Sigmoid" in ops
    norms = [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    assert norms, "PReLU slopes are exported as BatchNormalization scales"
    for node in norms:
        epsilon = next(a.f for a in node.attribute if a.name == "epsilon")
        assert epsilon == 0.0, node.name  # the scale is exactly the slope
