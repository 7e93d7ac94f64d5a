"""The face path end to end: the astronaut is happy, bad input is a clear InputError."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import InputError
from tests.conftest import ASTRONAUT, ASTRONAUT_FACE, iou


@pytest.fixture(scope="module")
def recognizer(face_bundle):
    return edge_sdk.load(face_bundle)


def test_astronaut_is_happy_with_one_face(recognizer) -> None:
    result = recognizer.predict(ASTRONAUT)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.label == "happy"
    assert face.probabilities["happy"] > 0.99
    assert list(face.probabilities) == list(recognizer.labels)
    assert abs(sum(face.probabilities.values()) - 1.0) < 1e-4
    assert face.detection_score > 0.999
    assert iou(face.box, ASTRONAUT_FACE) > 0.85
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert set(result.timings_ms) == {"decode", "detect", "classify", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())


def test_every_input_form_gives_the_same_answer(recognizer, astronaut) -> None:
    reference = recognizer.predict(astronaut).faces[0]
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    forms = {
        "path": str(ASTRONAUT),
        "pathlib": ASTRONAUT,
        "bytes": ASTRONAUT.read_bytes(),
        "float": astronaut.astype(np.float32) / 255.0,
        "rgba": np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)]),
        "uint16": astronaut.astype(np.uint16) * 257,
    }
    for name, image in forms.items():
        face = recognizer.predict(image).faces[0]
        assert iou(face.box, reference.box) > 0.99, name
        assert face.label == "happy", name
    assert recognizer.predict(bgr, color="bgr").faces[0].box == reference.box
    # Gray input keeps the face but is a different image, so only the detection must hold.
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert iou(recognizer.predict(gray).faces[0].box, reference.box) > 0.8


def test_no_face_is_an_explicit_empty_result(recognizer, faceless) -> None:
    result = recognizer.predict(faceless)
    assert result.faces == ()
    assert result.to_dict()["no_face"] is True
    assert result.to_dict()["face_count"] == 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_jpeg(tmp_path: Path) -> Path:
    ok, data = cv2.imencode(".jpg", cv2.imread(str(ASTRONAUT)))
    assert ok
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated_jpeg, "truncated JPEG"),
        (lambda tmp: _write(tmp / "empty.png", b""), "empty"),
        (lambda tmp: tmp / "missing.jpg", "no such file"),
        (lambda tmp: _write(tmp / "junk.jpg", b"not an image at all"), "not a decodable image"),
        (lambda tmp: tmp, "not a regular file"),
    ],
    ids=["truncated-jpeg", "zero-bytes", "missing-path", "garbage", "directory"],
)
def test_bad_files_raise_input_error(recognizer, tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError, match=message):
        recognizer.predict(path)


def test_one_pixel_png_is_refused(recognizer, tmp_path: Path) -> None:
    ok, data = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    assert ok
    with pytest.raises(InputError, match="1x1 is too small"):
        recognizer.predict(data.tobytes())


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (np.zeros((64, 64, 5), np.uint8), r"shape \(64, 64, 5\)"),
        (np.zeros((1, 1, 3), np.uint8), "too small"),
        (np.full((64, 64, 3), 200.0, np.float32), r"\[0, 1\]"),
        (np.zeros((64, 64, 3), np.int8), "unsupported dtype"),
        (np.zeros((2, 64, 64, 3), np.uint8), "not an image"),
    ],
    ids=["nan", "five-channels", "one-pixel", "float-0-255", "int8", "batch"],
)
def test_bad_arrays_raise_input_error(recognizer, array: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        recognizer.predict(array)


def test_bad_call_arguments(recognizer, astronaut) -> None:
    with pytest.raises(InputError, match="needs an input"):
        recognizer.predict()
    with pytest.raises(InputError, match="color must be"):
        recognizer.predict(astronaut, color="hsv")
    with pytest.raises(InputError, match="unsupported image input"):
        recognizer.predict(12345)


def test_concurrent_callers_get_the_sequential_answers(recognizer, astronaut, faceless) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = [astronaut, faceless, astronaut[::-1].copy(), astronaut[:, ::-1].copy()] * 3
    sequential = [recognizer.predict(i).to_dict()["faces"] for i in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = [r.to_dict()["faces"] for r in pool.map(recognizer.predict, images)]
    assert concurrent == sequential
