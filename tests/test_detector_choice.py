"""``load(detector=NAME)`` and ``predict --detector``: the same faces and labels whichever
detector runs, and ``auto`` choosing MTCNN when faces smaller than BlazeFace finds are asked for."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import edge_sdk
from edge_sdk.cli import app
from edge_sdk.errors import InputError
from tests.conftest import ASTRONAUT, iou

pytest.importorskip("tflite", reason="exporting BlazeFace reads .tflite files")


def _predict(*args: str) -> dict:
    done = CliRunner().invoke(app, ["predict", str(ASTRONAUT), "--json", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_detector_option_gives_the_same_face_and_label_as_mtcnn() -> None:
    mtcnn = _predict()["faces"][0]
    for name in ("auto", "blazeface-full", "blazeface-back"):
        face = _predict("--detector", name)["faces"][0]
        assert face["label"] == mtcnn["label"] == "happy", name
        assert iou(face["box"], mtcnn["box"]) >= 0.85, (name, face["box"], mtcnn["box"])


def test_auto_uses_mtcnn_when_min_face_is_below_blazeface_full_range() -> None:
    from edge_sdk.pipelines.blazeface import BlazeFaceDetector
    from edge_sdk.pipelines.detector import MTCNNDetector

    with edge_sdk.load(detector="auto") as fast:
        assert isinstance(fast.detector, BlazeFaceDetector)
    with edge_sdk.load(detector="auto", min_face=20) as small:
        assert isinstance(small.detector, MTCNNDetector)


def test_unknown_detector_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="blazeface-full"):
        edge_sdk.load(detector="yolo")
    done = CliRunner().invoke(app, ["predict", str(ASTRONAUT), "--detector", "yolo"])
    assert done.exit_code == 2 and "unknown detector" in done.output


def test_a_named_detector_leaves_the_bundles_mtcnn_graphs_unopened() -> None:
    """With ``detector="blazeface-full"`` face-fer7's P/R/O-Net sessions were opened too
    (memory and start-up time for graphs that never ran)."""
    with edge_sdk.load(detector="blazeface-full") as recognizer:
        assert set(recognizer.backends) == {"detector/blazeface_full", "face-fer7/classifier"}
        fer7 = recognizer.pipelines[0]
        assert fer7.detector is None and set(fer7.backends) == {"classifier"}
        with pytest.raises(InputError, match="named detector"):
            fer7.predict(str(ASTRONAUT))
        assert recognizer.predict(str(ASTRONAUT)).faces[0].label == "happy"
