"""Labels that do not depend on the detector (issue 13, must be shown).

The astronaut is ``happy`` with exactly one face under every detector, and on 24 jittered
copies of it (rotation up to 12 degrees, scale 0.8-1.15, shifts, brightness and contrast,
mirroring; grey borders, so no second face is made up) the label of the face BlazeFace's
path finds agrees with MTCNN's path on at least 95% of them. The crop boxes show why: aligned
from the eyes they overlap MTCNN's by a median IoU above 0.9, BlazeFace's raw boxes by ~0.78.
Both CPU runtimes are checked, since selection by measurement may open either.
"""

from __future__ import annotations

import numpy as np
import pytest

import edge_sdk
from edge_sdk.pipelines.blazeface import BlazeFaceConfig
from tests.conftest import iou

pytest.importorskip("tflite", reason="exporting BlazeFace reads .tflite files")
COPIES = 24
AGREEMENT = 0.95


def jittered(image: np.ndarray, count: int = COPIES, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded random variations of ``image`` (see the module docstring)."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    out = []
    for index in range(count):
        matrix = cv2.getRotationMatrix2D(
            (width / 2, height / 2), rng.uniform(-12, 12), rng.uniform(0.8, 1.15)
        )
        matrix[:, 2] += rng.uniform(-40, 40, 2)
        picture = cv2.warpAffine(
            image, matrix, (width, height), borderMode=cv2.BORDER_CONSTANT, borderValue=(110,) * 3
        )
        gain, offset = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
        picture = np.clip(picture * gain + offset, 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(picture[:, ::-1]) if index % 2 else picture)
    return out


def main_face(faces):
    """The largest face of a result (the portrait's own)."""
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


@pytest.fixture(scope="module")
def copies(astronaut) -> list[np.ndarray]:
    return jittered(astronaut)


@pytest.fixture(scope="module")
def mtcnn_faces(copies):
    with edge_sdk.load(detector="mtcnn", backend="ort-cpu") as recognizer:
        return [main_face(recognizer.predict(picture).faces) for picture in copies]


@pytest.mark.parametrize(
    "detector", ["mtcnn", "auto", "blazeface-short", "blazeface-full", "blazeface-back"]
)
def test_the_astronaut_is_happy_with_one_face_under_every_detector(detector, astronaut) -> None:
    with edge_sdk.load(detector=detector) as recognizer:
        faces = recognizer.predict(astronaut).faces
    assert [face.label for face in faces] == ["happy"]


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
@pytest.mark.parametrize("detector", ["blazeface-full", "blazeface-back"])
def test_labels_agree_with_mtcnn_on_jittered_copies(detector, backend, copies, mtcnn_faces) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    with edge_sdk.load(detector=detector, backend=backend) as recognizer:
        aligned = [main_face(recognizer.predict(p).faces) for p in copies]
        recognizer.detector.config = BlazeFaceConfig(align=False)
        raw = [main_face(recognizer.predict(p).faces) for p in copies]
    pairs = list(zip(aligned, raw, mtcnn_faces, strict=True))
    same = sum(a.label == m.label for a, _, m in pairs)
    assert same >= AGREEMENT * COPIES, f"{same}/{COPIES} labels agree"
    aligned_iou = np.median([iou(a.box, m.box) for a, _, m in pairs])
    raw_iou = np.median([iou(r.box, m.box) for _, r, m in pairs])
    assert aligned_iou >= 0.88 and raw_iou < 0.82, (aligned_iou, raw_iou)
