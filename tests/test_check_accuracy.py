"""`edge-sdk check accuracy` and check_accuracy(): data sets written here, real bundles.

Face data: the astronaut portrait (the face-fer7 bundle says "happy") flipped and resized in
a folder-per-class layout, and a FER2013 CSV whose rows are its face cut out and shrunk to
48 x 48 grey. The other modalities run the tiny family bundles of
``tests/test_pipelines_bundles.py`` (trained for a few steps: their figures are not judged,
only that every route runs and is scored).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.checks.accuracy import (
    MISS_LABEL,
    check_accuracy,
    dataset_labels_for,
    head_from_body,
    open_recognizer,
    parse_label_map,
    pick_box,
)
from edge_sdk.cli import app
from edge_sdk.datasets import read_dataset
from edge_sdk.datasets.caer import CAER_S_LABELS
from edge_sdk.datasets.meld import MELD_COLUMNS, MELD_LABELS
from edge_sdk.errors import InputError
from edge_sdk.preprocess.windows import body_box_from_head
from edge_sdk.reports.html import check_page
from tests.conftest import ASTRONAUT, ASTRONAUT_FACE
from tests.support.bundles import clip, tiny_bundles, voiced
from tests.support.media import float_wav

runner = CliRunner()
FER7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _invoke(*args: str):
    return runner.invoke(app, ["check", "accuracy", *args], catch_exceptions=False)


def _astronaut_bgr() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))


def _face_48(margin: int) -> np.ndarray:
    """The astronaut's face with ``margin`` px around it, as FER2013's 48 x 48 grey."""
    grey = cv2.cvtColor(_astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    crop = grey[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin]
    return cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def happy_faces(tmp_path_factory) -> Path:
    """<root>/happy/: the astronaut as is, mirrored, at half and at 1.5x size."""
    root = tmp_path_factory.mktemp("faces")
    (root / "happy").mkdir()
    image = _astronaut_bgr()
    variants = {
        "plain.png": image,
        "mirrored.png": np.ascontiguousarray(image[:, ::-1]),
        "half.jpg": cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "large.png": cv2.resize(image, None, fx=1.5, fy=1.5),
    }
    for name, pixels in variants.items():
        assert cv2.imwrite(str(root / "happy" / name), pixels)
    return root


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory) -> Path:
    """fer2013.csv: the face with context (detected) twice and cut tight (not detected)."""
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    rows = [(15, "PrivateTest"), (25, "PrivateTest"), (0, "PrivateTest"), (15, "Training")]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for margin, usage in rows:
            pixels = " ".join(str(int(v)) for v in _face_48(margin).ravel())
            writer.writerow([FER7.index("happy"), pixels, usage])
    return path


# --------------------------------------------------------------------------- face, API
def test_folder_of_astronauts_is_all_happy(face_bundle, happy_faces) -> None:
    data = read_dataset(happy_faces, "folder")
    result = check_accuracy(face_bundle, data)
    metrics = result.metrics
    assert result.modality == "face" and result.task == "classification"
    assert result.samples == metrics.n == 4 and result.no_face == 0 and result.failed == 0
    assert metrics.war == metrics.uar == 1.0
    # the data set's one label first, then the bundle's six others (predicting them is wrong)
    assert metrics.labels == ("happy", "angry", "disgust", "fear", "sad", "surprise", "neutral")
    assert metrics.confusion.shape == (7, 7) and metrics.confusion[0, 0] == 4
    assert result.extra_labels == ("angry", "disgust", "fear", "sad", "surprise", "neutral")
    assert result.passed and result.to_dict()["context"]["label_mapping"] == {"happy": "happy"}


def test_fer2013_rows_are_fed_as_arrays(face_bundle, fer_csv) -> None:
    data = read_dataset(fer_csv, "fer2013", split="PrivateTest")
    assert data.samples[0].paths == () and data.samples[0].image.shape == (48, 48)
    with open_recognizer(face_bundle)[0] as recognizer:
        detected = check_accuracy(recognizer, data)
        given = check_accuracy(recognizer, data, faces="given")
    # the tight crop has no face for the detector: a miss, in its own column
    assert detected.samples == 3 and detected.no_face == 1 and detected.failed == 0
    assert detected.metrics.labels == (*FER7, MISS_LABEL)
    happy = FER7.index("happy")
    assert detected.metrics.confusion[happy, happy] == 2
    assert detected.metrics.confusion[happy, len(FER7)] == 1
    assert detected.metrics.war == pytest.approx(2 / 3)
    assert detected.metrics.macro_f1 == pytest.approx(0.8)  # over the real classes only
    # the whole 48 x 48 image is the face (how FER2013 figures are published)
    assert given.no_face == 0 and given.metrics.war == 1.0
    assert given.metrics.confusion.shape == (7, 7)


def test_limit_draws_a_seeded_subset(face_bundle, happy_faces) -> None:
    data = read_dataset(happy_faces, "folder")
    with open_recognizer(face_bundle)[0] as recognizer:
        steps: list[tuple[int, int]] = []
        first = check_accuracy(
            recognizer, data, limit=2, seed=5, on_step=lambda d, t, _: steps.append((d, t))
        )
        again = check_accuracy(recognizer, data, limit=2, seed=5)
    assert first.samples == first.metrics.n == 2 and first.dataset["read"] == 4
    assert steps == [(1, 2), (2, 2)]
    assert first.to_dict()["metrics"] == again.to_dict()["metrics"]
    assert first.limit == 2 and first.seed == 5


def test_multilabel_jsonl_is_scored_by_average_precision(face_bundle, tmp_path) -> None:
    lines = [
        {"path": str(ASTRONAUT), "labels": ["happy", "surprise"]},
        {"path": str(ASTRONAUT), "labels": ["sad", "happy"]},
    ]
    path = tmp_path / "multi.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    result = check_accuracy(face_bundle, read_dataset(path, "jsonl"))
    assert result.task == "multilabel" and result.modality == "face"
    assert result.metrics.labels[:3] == ("happy", "sad", "surprise")
    ap = dict(zip(result.metrics.labels, result.metrics.average_precision, strict=True))
    assert ap["happy"] == 1.0 and np.isnan(ap["angry"])  # no positive: undefined, left out
    assert 0.0 < result.metrics.mean_ap <= 1.0
    with pytest.raises(InputError, match="--min-war applies to classification"):
        check_accuracy(face_bundle, read_dataset(path, "jsonl"), thresholds={"min_war": 0.5})


def test_box_helpers() -> None:
    boxes = [(0, 0, 10, 10), (20, 20, 60, 60), (100, 100, 120, 120)]
    assert pick_box(boxes, None) == 1  # largest
    assert pick_box(boxes, (90, 90, 130, 130)) == 2  # centre inside the given box
    assert pick_box(boxes, (200, 200, 300, 300)) is None
    assert pick_box([], None) is None
    head = head_from_body((100, 50, 250, 500))
    body = body_box_from_head(np.asarray(head), (1000, 1000))
    assert body[0] == pytest.approx(100) and body[2] == pytest.approx(250)
    assert parse_label_map(["contempt=disgust", "other=,a=b"]) == {
        "contempt": "disgust",
        "other": None,
        "a": "b",
    }
    with pytest.raises(InputError, match="expected DATASET_LABEL=BUNDLE_LABEL"):
        parse_label_map(["contempt"])


# --------------------------------------------------------------------------- CLI
def test_cli_json_parses_and_tables_print(face_bundle, happy_faces) -> None:
    bundle = str(face_bundle.root)
    result = _invoke(bundle, "--dataset", str(happy_faces), "--format", "folder", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["check"] == "accuracy" and payload["passed"] is True
    assert payload["metrics"]["scores"]["war"] == 1.0
    assert payload["context"]["modality"] == "face" and payload["context"]["no_face"] == 0
    tables = _invoke(bundle, "--dataset", str(happy_faces), "--format", "folder")
    assert tables.exit_code == 0, tables.output
    for text in ("war", "uar", "macro_f1", "confusion matrix", "no face (misses)"):
        assert text in tables.output


def test_cli_threshold_missed_exits_1(face_bundle, happy_faces, tmp_path) -> None:
    sad = tmp_path / "sad"
    sad.mkdir()
    for image in (happy_faces / "happy").iterdir():
        (sad / image.name).write_bytes(image.read_bytes())
    args = (str(face_bundle.root), "--dataset", str(tmp_path), "--format", "folder")
    missed = _invoke(*args, "--min-war", "0.5", "--min-uar", "0.5")
    assert missed.exit_code == 1, missed.output
    assert "FAIL war 0.0000 < min_war 0.5" in missed.output
    assert "FAIL uar 0.0000 < min_uar 0.5" in missed.output
    assert _invoke(*args, "--min-war", "0.0").exit_code == 0
    wrong_task = _invoke(*args, "--max-rmse", "0.3")
    assert wrong_task.exit_code == 2
    assert "--max-rmse applies to valence_arousal data sets" in wrong_task.output


def test_cli_label_missing_from_bundle_exits_2(face_bundle, happy_faces, tmp_path) -> None:
    for name in ("happy", "contempt"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes((happy_faces / "happy" / "plain.png").read_bytes())
    args = (str(face_bundle.root), "--dataset", str(tmp_path), "--format", "folder")
    missing = _invoke(*args)
    assert missing.exit_code == 2
    assert "error: data set label 'contempt' (1 sample) of folder has no counterpart" in (
        missing.output
    )
    assert "--label-map contempt=<bundle label>" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    merged = _invoke(*args, "--label-map", "contempt=disgust", "--json")
    assert merged.exit_code == 0, merged.output
    payload = json.loads(merged.stdout)
    assert payload["metrics"]["labels"][:2] == ["contempt (disgust)", "happy"]
    assert payload["context"]["label_mapping"] == {"contempt": "disgust", "happy": "happy"}
    dropped = json.loads(_invoke(*args, "--label-map", "contempt=", "--json").stdout)
    assert dropped["context"]["samples"] == 1 and dropped["metrics"]["scores"]["war"] == 1.0
    assert dropped["context"]["dataset"]["skipped"] == {
        "label 'contempt': left out by the label map": 1
    }
    skipped = json.loads(_invoke(*args, "--unmapped", "skip", "--json").stdout)
    assert skipped["context"]["samples"] == 1
    typo = _invoke(*args, "--label-map", "contemp=disgust")
    assert typo.exit_code == 2 and "label_map names ['contemp']" in typo.output


def test_cli_report_writes_json_png_and_page(face_bundle, fer_csv, tmp_path) -> None:
    report = tmp_path / "report"
    args = [str(face_bundle.root), "--dataset", str(fer_csv), "--format", "fer2013"]
    result = _invoke(*args, "--split", "PrivateTest", "--report", str(report), "--min-war", "0.5")
    assert result.exit_code == 0, result.output
    assert {p.name for p in report.iterdir()} == {"accuracy.json", "confusion.png", "index.html"}
    assert check_page(report / "index.html") == []
    page = (report / "index.html").read_text(encoding="utf-8")
    assert 'class="pass"' in page and "no face (misses): 1" in page
    payload = json.loads((report / "accuracy.json").read_text(encoding="utf-8"))
    assert payload["passed"] is True and payload["context"]["dataset"]["split"] == "PrivateTest"
    assert payload["metrics"]["labels"][-1] == MISS_LABEL
    printed = _invoke(*args, "--split", "PrivateTest", "--json")
    assert json.loads(printed.stdout)["metrics"] == payload["metrics"]


def test_cli_bad_inputs_exit_2(face_bundle, tmp_path) -> None:
    bundle = str(face_bundle.root)
    unknown = _invoke(bundle, "--dataset", str(tmp_path), "--format", "kinetics")
    assert unknown.exit_code == 2 and "unknown dataset format 'kinetics'" in unknown.output
    empty = _invoke(bundle, "--dataset", str(tmp_path / "none.csv"), "--format", "fer2013")
    assert empty.exit_code == 2 and "error:" in empty.output


# --------------------------------------------------------------------------- other families
@pytest.fixture(scope="module")
def tiny():
    return tiny_bundles()


def _write_clip(path: Path, frames: np.ndarray) -> None:
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_valence_arousal_with_face_caf(face_bundle, tiny, tmp_path) -> None:
    lines = [
        {"path": str(ASTRONAUT), "valence": 0.6, "arousal": 0.2},
        {"path": str(ASTRONAUT), "valence": 0.4, "arousal": 0.5},
        {"path": str(ASTRONAUT), "valence": -0.2, "arousal": 0.1, "box": [0, 400, 60, 500]},
    ]
    path = tmp_path / "va.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    with open_recognizer([tiny["face-caf"]], detector=face_bundle)[0] as recognizer:
        labels = dataset_labels_for(recognizer, "jsonl")
        assert labels == ("valence", "arousal")
        result = check_accuracy(recognizer, read_dataset(path, "jsonl", labels))
    assert result.task == "valence_arousal" and result.modality == "face"
    # the third box holds no detected face: a miss, left out of the regression figures
    assert result.no_face == 1 and result.metrics.n == 2
    assert set(result.metrics.scores) == {
        f"{m}_{d}" for m in ("rmse", "pcc", "ccc") for d in ("valence", "arousal")
    }


def test_scene_caer_s_and_body_boxes(face_bundle, tiny, tmp_path) -> None:
    folder = tmp_path / "caer" / "test" / "Happy"
    folder.mkdir(parents=True)
    (folder / "0001.png").write_bytes(ASTRONAUT.read_bytes())
    lines = [
        {"path": str(ASTRONAUT), "label": "happy", "box": [120, 40, 330, 512]},  # face inside
        {"path": str(ASTRONAUT), "label": "sad", "box": [0, 300, 100, 512]},  # no face inside
    ]
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    with open_recognizer([face_bundle, tiny["scene-cocoer"]])[0] as recognizer:
        caer = check_accuracy(recognizer, read_dataset(tmp_path / "caer", "caer-s"))
        boxed = check_accuracy(recognizer, read_dataset(bodies, "jsonl"))
    assert caer.modality == "scene" and caer.samples == caer.metrics.n == 1
    assert caer.no_face == 0 and caer.metrics.labels == CAER_S_LABELS
    assert caer.metrics.support[CAER_S_LABELS.index("happy")] == 1
    assert caer.dataset["split"] == "test"
    assert boxed.modality == "face"  # a face family is loaded and JSONL is not a scene layout
    with open_recognizer([tiny["scene-cocoer"]], detector=face_bundle)[0] as recognizer:
        boxed = check_accuracy(recognizer, read_dataset(bodies, "jsonl"))
    assert boxed.modality == "scene" and boxed.no_face == 0 and boxed.metrics.n == 2
    assert boxed.notes == {"head box from the body box (no face inside it)": 1}


def test_meld_dialogs_text_only(face_bundle, tiny, tmp_path) -> None:
    rows = [
        [1, "I got the job!", "Ann", "joy", "positive", 0, 0, 1, 1, "00:00:01,000", "00:00:02,000"],
        [2, "Really?", "Bob", "surprise", "positive", 0, 1, 1, 1, "00:00:02,000", "00:00:03,000"],
        [3, "I am so sorry.", "Ann", "sadness", "negative", 1, 0, 1, 1, "00:01:01,0", "00:01:02,0"],
    ]
    path = tmp_path / "test_sent_emo.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MELD_COLUMNS)
        writer.writerows(rows)
    data = read_dataset(path, "meld", missing_files="keep")  # no clips: text only
    with open_recognizer([tiny["dialog-m2fnet"]], detector=face_bundle)[0] as recognizer:
        result = check_accuracy(recognizer, data, limit=2, seed=0)
        full = check_accuracy(recognizer, data)
    assert full.modality == "dialog" and full.samples == full.metrics.n == 3
    assert full.metrics.labels == MELD_LABELS and full.extra_labels == ()
    assert full.failed == 0 and full.no_face == 0
    assert result.samples == 2  # whole dialogs in a seeded order, cut to the limit


def test_afew_clips_audio_video_and_video_only(face_bundle, tiny, tmp_path) -> None:
    folder = tmp_path / "afew" / "Val" / "Happy"
    folder.mkdir(parents=True)
    _write_clip(folder / "000.avi", clip(frames=4))
    (folder / "000.wav").write_bytes(float_wav(voiced(1.2, 16000), 16000))
    data = read_dataset(tmp_path / "afew", "afew")
    loaded = [face_bundle, tiny["face-caf"], tiny["av-fbp"]]
    with open_recognizer(loaded)[0] as recognizer:
        fused = check_accuracy(recognizer, data)
    assert fused.modality == "audio" and fused.failed == 0 and fused.metrics.n == 1
    video = check_accuracy(face_bundle, data)  # no audio family: per-frame faces, averaged
    assert video.modality == "video" and video.no_face == 0
    assert video.metrics.war == 1.0  # the astronaut is happy in every frame
