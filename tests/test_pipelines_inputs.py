"""Bad input, per modality, is a clear InputError naming the problem (never a crash or NaN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import InputError
from edge_sdk.pipelines.dialog import Utterance, read_dialog_jsonl
from edge_sdk.preprocess.audio import Audio
from tests.conftest import ASTRONAUT
from tests.support.bundles import clip, tiny_bundles, voiced

RATE = 16000


@pytest.fixture(scope="module")
def recognizer(face_bundle, device):
    bundles = tiny_bundles()
    order = ("face-caf", "scene-cocoer", "av-fbp", "dialog-m2fnet")
    with edge_sdk.load([face_bundle, *(bundles[f] for f in order)], device=device) as rec:
        yield rec


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ((np.zeros(0, np.float32), RATE), r"empty \(0 samples\)"),
        ((np.full(RATE, np.nan, np.float32), RATE), "NaN or infinite"),
        ((np.array([0.5], np.float32), RATE), "1 samples"),
        ((voiced(1.0, RATE), 0), "sample rate must be a positive integer"),
        ((voiced(1.0, RATE), 16000.5), "sample rate must be a positive integer"),
        (voiced(1.0, RATE), "needs its sample rate"),
        ((np.zeros((2, 3, 4000), np.float32), RATE), r"must be \(samples,\)"),
        ((np.array(["a", "b"]), RATE), "must be numeric"),
        ((voiced(0.2, RATE), RATE), "outside what av-fbp was exported for"),
        ((voiced(9.0, 8000), 8000), "outside what av-fbp was exported for"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "lacks a fmt or data chunk"),
        (b"not a wav file at all", "not a RIFF/WAVE file"),
        (12345, "unsupported audio input"),
    ],
    ids=["empty", "nan", "one-sample", "rate-0", "rate-float", "no-rate", "3d", "strings",
         "too-short", "too-long", "no-chunks", "not-wav", "int"],
)
def test_bad_audio(recognizer, audio, message: str) -> None:
    with pytest.raises(InputError, match=message):
        recognizer.predict(audio=audio)


def test_missing_audio_file(recognizer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such audio file"):
        recognizer.predict(audio=tmp_path / "nothing.wav")


@pytest.mark.parametrize(
    ("dialog", "message"),
    [
        ([], r"at least one utterance \(got 0\)"),
        ([Utterance(text="hello"), Utterance()], "utterance 1 has no modality"),
        ([{"text": "   ", "speaker": "a"}], "utterance 0 has no modality"),
        ({"text": "hi"}, "a dialog is a list of utterances"),
        ("hello there", "a dialog is a list of utterances"),
        ([{"text": "hi", "mood": "x"}], r"unknown keys \['mood'\]"),
        ([{"text": 3}], "text must be a string"),
        ([{"text": "a", "frames": [], "video": []}], "frames or video, not both"),
        ([42], "expected an Utterance, a mapping or a string"),
        ([Utterance(audio=(np.full(8000, np.nan, np.float32), RATE))], "NaN"),
        ([Utterance(text="hi", frames=[])], "utterance 0 frames: no frames"),
        (["hi"] * 33, "at most 32"),
        ([Utterance(audio=(voiced(5.0, RATE), RATE))], "longer than the 4.0 s"),
    ],
    ids=["zero", "no-modality", "blank-text", "mapping", "string", "unknown-key", "text-type",
         "frames-and-video", "int", "nan-audio", "no-frames", "too-long", "long-audio"],
)
def test_bad_dialog(recognizer, dialog, message: str) -> None:
    with pytest.raises(InputError, match=message):
        recognizer.predict(dialog=dialog)


def test_running_dialog_refuses_an_empty_utterance_and_keeps_its_state(recognizer) -> None:
    running = recognizer.open_dialog()
    running.add("i am happy")
    with pytest.raises(InputError, match="utterance 0 has no modality"):
        running.add(Utterance(speaker="nobody"))
    assert len(running) == 1
    assert len(running.add({"text": "oh no"}).utterances) == 2


def test_dialog_jsonl_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        read_dialog_jsonl(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"got 0"):
        read_dialog_jsonl(empty)
    with pytest.raises(InputError, match="no such dialog file"):
        read_dialog_jsonl(tmp_path / "missing.jsonl")


def _mixed_sizes() -> list[np.ndarray]:
    frames = list(clip(frames=3))
    frames[2] = frames[2][:150]
    return frames


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (_mixed_sizes(), "frames of mixed sizes: frame 0 is 200x200, frame 2 is 200x150"),
        ([], "no frames"),
        (np.zeros((4, 4), np.uint8), r"must be \(T, H, W\)"),
        ([np.full((64, 64, 3), np.nan, np.float32)], "NaN"),
        ([np.zeros((5, 5, 3), np.uint8)], "too small"),
        ("no/such/clip.avi", "no such video file"),
        (3.5, "unsupported video input"),
    ],
    ids=["mixed-sizes", "empty", "2d", "nan", "tiny", "missing-file", "float"],
)
def test_bad_video(recognizer, video, message: str) -> None:
    with pytest.raises(InputError, match=message):
        recognizer.predict(video=video)
    with pytest.raises(InputError, match=message):
        recognizer.predict(audio=(voiced(1.0, RATE), RATE), video=video)


def test_mixed_frame_sizes_inside_a_dialog_utterance(recognizer) -> None:
    with pytest.raises(InputError, match="utterance 1 frames: frames of mixed sizes"):
        recognizer.predict(dialog=["hello", {"text": "look", "frames": _mixed_sizes()}])


@pytest.mark.parametrize(
    ("scene", "message"),
    [
        ({"image": ASTRONAUT, "head_boxes": [[600, 10, 700, 90]]}, "lies outside the 512x512"),
        ({"image": ASTRONAUT, "head_boxes": [[-90, -90, -10, -10]]}, "lies outside"),
        ({"image": ASTRONAUT, "head_boxes": [[10, 10, 50, 50]], "body_boxes": [[0, 520, 40, 600]]},
         r"body_boxes\[0\] = .* lies outside"),
        ({"image": ASTRONAUT, "head_boxes": [[10, 10, np.nan, 50]]}, "NaN"),
        ({"image": ASTRONAUT, "head_boxes": [[50, 10, 10, 50]]}, "is empty"),
        ({"image": ASTRONAUT, "head_boxes": [[1, 2, 3]]}, r"expected \(n, 4\)"),
        ({"image": ASTRONAUT, "head_boxes": []}, "no boxes given"),
        ({"image": ASTRONAUT, "head_boxes": "here"}, "not numeric"),
        ({"image": ASTRONAUT, "head_boxes": [[10, 10, 50, 50]],
          "body_boxes": [[0, 0, 100, 200], [0, 0, 90, 90]]}, "2 body boxes for 1 head boxes"),
        ({"image": ASTRONAUT, "body_boxes": [[0, 0, 100, 200]]}, "need their head_boxes"),
        ({"image": ASTRONAUT, "boxes": [[0, 0, 1, 1]]}, r"unknown keys \['boxes'\]"),
        ({"head_boxes": [[0, 0, 1, 1]]}, "needs 'image'"),
        (np.zeros((3, 3, 3), np.uint8), "too small"),
    ],
    ids=["right-of-image", "above-left", "body-below", "nan", "empty", "shape", "none",
         "text", "count", "body-only", "unknown-key", "no-image", "tiny-image"],
)
def test_bad_scene(recognizer, scene, message: str) -> None:
    with pytest.raises(InputError, match=message):
        recognizer.predict(scene=scene)


def test_box_partly_outside_is_accepted_and_zero_padded(recognizer) -> None:
    result = recognizer.predict(scene={"image": ASTRONAUT, "head_boxes": [[480, 200, 560, 300]]})
    person = result.scene.people[0]
    assert person.head_box == (480.0, 200.0, 560.0, 300.0)
    assert person.body_box[2] <= 512 and person.body_source == "expansion"
    assert np.isfinite(list(person.probabilities.values())).all()


def test_missing_family_and_no_input(face_bundle, device, recognizer) -> None:
    with edge_sdk.load(face_bundle, device=device) as face_only:
        with pytest.raises(InputError, match="no audio family is loaded"):
            face_only.predict(audio=Audio(voiced(1.0, RATE), RATE))
        with pytest.raises(InputError, match="no dialog family is loaded"):
            face_only.open_dialog()
        with pytest.raises(InputError, match="no scene family"):
            face_only.predict(ASTRONAUT, scene=ASTRONAUT)
    with pytest.raises(InputError, match="needs an input"):
        recognizer.predict()
    with pytest.raises(InputError, match="color must be"):
        recognizer.predict(video=clip(frames=2), color="hsv")
