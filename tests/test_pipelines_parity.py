"""Every modality through ONNX Runtime equals the PyTorch reference pipeline.

Two Recognizers hold the same bundles (face-fer7 + tiny CAF, Exp-CLIP, CocoER, FBP, M2FNet):
one runs every graph on ``ort-cpu``, the other on ``torch``. Same generated inputs, same
labels, probabilities within 1e-4 (the larger families' tolerance in the spec).
"""

from __future__ import annotations

import numpy as np
import pytest

import edge_sdk
from edge_sdk.pipelines.dialog import Utterance
from tests.conftest import ASTRONAUT, iou
from tests.support.bundles import clip, tiny_bundles, voiced

TOL = 1e-4
ORDER = ("face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")


@pytest.fixture(scope="module")
def pair(face_bundle, device):
    bundles = tiny_bundles()
    chosen = [face_bundle, *(bundles[f] for f in ORDER)]
    ort = edge_sdk.load(chosen, backend="ort-cpu", device=device)
    ref = edge_sdk.load(chosen, backend="torch", device=device)
    yield ort, ref
    ort.close()
    ref.close()


def _close(a: dict[str, float], b: dict[str, float]) -> None:
    assert list(a) == list(b)
    diff = np.abs(np.array(list(a.values())) - np.array(list(b.values())))
    assert diff.max() <= TOL, diff.max()


def test_backends_are_the_requested_ones(pair) -> None:
    ort, ref = pair
    assert set(ort.backends.values()) == {"ort-cpu/fp32"}
    assert set(ref.backends.values()) == {"torch/fp32"}
    assert {"detector/pnet", "face-caf/regressor", "scene-cocoer/levels", "av-fbp/audio_only",
            "dialog-m2fnet/dialog"} <= set(ort.backends)


def test_face_families(pair) -> None:
    got, want = (r.predict(ASTRONAUT) for r in pair)
    assert len(got.faces) == len(want.faces) == 1
    a, b = got.faces[0], want.faces[0]
    assert iou(a.box, b.box) > 0.99
    assert a.label == b.label == "happy"
    _close(a.probabilities, b.probabilities)
    assert abs(a.valence - b.valence) <= TOL and abs(a.arousal - b.arousal) <= TOL
    assert -1.0 <= a.valence <= 1.0 and -1.0 <= a.arousal <= 1.0
    assert a.zero_shot.label == b.zero_shot.label
    _close(a.zero_shot.probabilities, b.zero_shot.probabilities)
    assert set(got.timings_ms) == {"decode", "detect", "classify", "valence_arousal",
                                   "zero_shot", "total"}
    assert got.backends["regressor"] == "ort-cpu/fp32"
    assert want.backends["zero_shot"] == "torch/fp32"


@pytest.mark.parametrize(
    "scene",
    [
        {"image": str(ASTRONAUT)},
        {"image": str(ASTRONAUT), "head_boxes": [[170, 40, 280, 180], [20, 30, 90, 110]]},
        {"image": str(ASTRONAUT), "head_boxes": [[170, 40, 280, 180]],
         "body_boxes": [[100, 20, 400, 512]]},
    ],
    ids=["detected-head", "caller-heads", "caller-head-and-body"],
)
def test_scene(pair, scene) -> None:
    got, want = (r.predict(scene=scene).scene for r in pair)
    assert got.workspace == want.workspace == "torch"
    assert len(got.people) == len(want.people) >= 1
    for a, b in zip(got.people, want.people, strict=True):
        assert a.head_box == b.head_box or iou(a.head_box, b.head_box) > 0.99
        assert a.label == b.label and a.removed == b.removed and a.kept == b.kept
        _close(a.probabilities, b.probabilities)
        _close(a.pseudo_label, b.pseudo_label)
        for name in ("context", "body", "head"):
            assert a.levels[name].label == b.levels[name].label
            _close(a.levels[name].probabilities, b.levels[name].probabilities)
            _close(a.levels[name].refined, b.levels[name].refined)


def test_audio_alone_at_another_rate_and_layout(pair) -> None:
    sound = (voiced(1.3, 44100, channels=2, seed=1), 44100)
    got, want = (r.predict(audio=sound).audio for r in pair)
    assert got.graph == want.graph == "audio_only" and got.fallback == "no video given"
    assert got.label == want.label
    _close(got.probabilities, want.probabilities)


def test_audio_video_and_per_frame_faces(pair) -> None:
    sound, frames = (voiced(1.0, 16000, seed=2), 16000), clip(frames=5)
    got, want = (r.predict(audio=sound, video=frames) for r in pair)
    assert got.audio.graph == want.audio.graph == "audio_video"
    assert got.audio.frames_used == want.audio.frames_used == 5
    assert got.audio.label == want.audio.label
    _close(got.audio.probabilities, want.audio.probabilities)
    assert len(got.video.frames) == len(want.video.frames) == 5
    for fa, fb in zip(got.video.frames, want.video.frames, strict=True):
        assert len(fa.faces) == len(fb.faces) == 1
        assert fa.faces[0].label == fb.faces[0].label
        _close(fa.faces[0].probabilities, fb.faces[0].probabilities)


def test_dialog(pair) -> None:
    frames = clip(frames=4)
    dialog = [
        Utterance(text="i am so happy today", speaker="ann"),
        Utterance(audio=(voiced(0.8, 22050, channels=2, seed=3), 22050), speaker="bob"),
        Utterance(text="what", audio=(voiced(0.6, 16000, seed=4), 16000), frames=list(frames),
                  speaker="ann"),
        {"text": "no way", "frames": frames[:2]},
    ]
    got, want = (r.predict(dialog=dialog).dialog for r in pair)
    assert [u.modalities for u in got.utterances] == [
        ("text",), ("audio",), ("text", "audio", "visual"), ("text", "visual")
    ]
    assert got.utterances[2].faces == 4
    for a, b in zip(got.utterances, want.utterances, strict=True):
        assert a.label == b.label and a.speaker == b.speaker
        _close(a.probabilities, b.probabilities)


def test_everything_in_one_call_equals_the_single_calls(pair) -> None:
    ort, _ = pair
    sound, frames = (voiced(1.0, 16000, seed=5), 16000), clip(frames=3)
    dialog = ["i am so happy", "oh no"]
    both = ort.predict(ASTRONAUT, scene=ASTRONAUT, audio=sound, video=frames, dialog=dialog)
    assert set(both.timings_ms) == {"face", "scene", "audio_video", "dialog", "total"}
    assert both.face.to_dict()["faces"] == ort.predict(ASTRONAUT).to_dict()["faces"]
    assert both.scene.people[0].probabilities == ort.predict(scene=ASTRONAUT).scene.people[
        0].probabilities
    alone = ort.predict(audio=sound, video=frames).audio
    assert both.audio.probabilities == alone.probabilities
    assert [u.label for u in both.dialog.utterances] == [
        u.label for u in ort.predict(dialog=dialog).dialog.utterances
    ]
