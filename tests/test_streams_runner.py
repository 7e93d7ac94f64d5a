"""The stream runner on a real clip with the real face bundle: one face, one track id,
the detector run only every N frames, timestamps from the file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import InputError
from edge_sdk.streams import StreamConfig, StreamRunner, TimedFrameStream, stream
from tests.conftest import ASTRONAUT, ASTRONAUT_FACE, iou

FPS, COUNT, STEP = 12.0, 24, (3, 1)  # the face moves 3 px right and 1 px down per frame


def shifted(k: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """640x480 frame k: the astronaut pasted at (20 + 3k, k), and where its face is."""
    image = cv2.imread(str(ASTRONAUT))
    x0, y0 = 20 + STEP[0] * k, STEP[1] * k
    canvas = np.full((480, 640, 3), 90, np.uint8)
    part = image[: 480 - y0, : 640 - x0]
    canvas[y0 : y0 + part.shape[0], x0 : x0 + part.shape[1]] = part
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return canvas, (x1 + x0, y1 + y0, x2 + x0, y2 + y0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "astronaut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    for k in range(COUNT):
        writer.write(shifted(k)[0])
    writer.release()
    return path


class CountingDetector:
    """The Recognizer's real detector, counting its calls."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.calls = detector, 0

    def detect(self, image: np.ndarray) -> Any:
        self.calls += 1
        return self.detector.detect(image)


@pytest.fixture(scope="module")
def recognizer(face_bundle: Any, device: Any) -> Any:
    with edge_sdk.load(face_bundle, device=device) as loaded:
        yield loaded


def test_runner_tracks_one_face_with_one_id_detecting_every_n_frames(
    recognizer: Any, clip: Path
) -> None:
    """Detect every 6th frame of 24: 4 detector calls, one track id on every frame, tracked
    boxes on the face (IoU >= 0.7 with where it was pasted), times k / fps from the file."""
    counting = CountingDetector(recognizer.detector)
    like = SimpleNamespace(detector=counting, face_heads=recognizer.face_heads,
                           backends=recognizer.backends)  # fmt: skip
    runner = StreamRunner(like, StreamConfig(detect_every=6))
    with TimedFrameStream(clip) as frames:
        results = list(runner.run(frames))
    assert len(results) == COUNT
    assert counting.calls == runner.detector_calls == 4
    assert [r.index for r in results if r.detected] == [0, 6, 12, 18]
    labels = set(recognizer.labels)
    for k, result in enumerate(results):
        assert abs(result.seconds - k / FPS) < 1e-3
        (face,) = result.faces
        assert face.track_id == 1
        assert face.source == ("detected" if k % 6 == 0 else "tracked")
        assert iou(face.face.box, shifted(k)[1]) >= 0.7, (k, face.face.box)
        assert face.label in labels and face.face.label in labels
        assert abs(sum(face.probabilities.values()) - 1) < 1e-4
        line = result.to_dict()
        assert line["faces"][0]["track_id"] == 1 and line["detected"] == result.detected
        assert ("detect" in result.timings_ms) == result.detected
        assert result.as_face_prediction().faces[0].label == face.label  # smoothed, drawable


def test_runner_detect_every_frame_calls_detector_each_frame(recognizer: Any, clip: Path) -> None:
    """detect_every=1 is the old behaviour: one detector call per frame, still one id."""
    results = list(stream(recognizer, clip, StreamConfig(detect_every=1), max_frames=8))
    assert [r.index for r in results] == list(range(8))
    assert all(r.detected for r in results)
    assert {f.track_id for r in results for f in r.faces} == {1}


def test_runner_needs_a_detector_and_face_heads() -> None:
    """A server connection (no detector) or no face family is an InputError that says so."""
    with pytest.raises(InputError, match="local Recognizer"):
        StreamRunner(SimpleNamespace(detector=None, face_heads=()))


def test_predict_video_streams_tracked_faces_with_file_time_and_sparse_detection(
    face_bundle: Any, clip: Path
) -> None:
    """The CLI stream: one track id, ``seconds`` = k / fps (was wall time since start), the
    detector on one frame in --detect-every, a summary with the calls and drops."""
    import json

    from typer.testing import CliRunner

    from edge_sdk.cli import app

    done = CliRunner().invoke(app, [
        "predict", "--video", str(clip), "--bundle", str(face_bundle.root),
        "--detect-every", "4", "--smooth", "3",
    ])  # fmt: skip
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    frames, summary = lines[:-1], lines[-1]
    assert len(frames) == COUNT and summary["frames"] == COUNT
    times = [k / FPS for k in range(COUNT)]
    assert [f["seconds"] for f in frames] == pytest.approx(times, abs=1e-3)
    assert [f["detected"] for f in frames] == [k % 4 == 0 for k in range(COUNT)]
    assert {face["track_id"] for f in frames for face in f["faces"]} == {1}
    assert summary["detector_calls"] == COUNT // 4 + (COUNT % 4 > 0)
    assert summary["dropped"] == 0
