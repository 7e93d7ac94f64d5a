"""Calibration feeds recorded through each modality's own pipeline (no second preprocessing)."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from calibration.feeds import collect_feeds
from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import InputError
from tests.support.bundles import tiny_bundles, voiced


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def bundles() -> dict[str, ModelBundle]:
    return tiny_bundles()


def test_wav_folder_feeds_the_audio_graph_through_the_log_mel_front_end(
    bundles, device, tmp_path
) -> None:
    folder = tmp_path / "wavs"
    folder.mkdir()
    for i, seconds in enumerate((1.0, 2.0, 3.5)):
        _write_wav(folder / f"u{i}.wav", voiced(seconds, 22050, seed=i), 22050)
    feeds = collect_feeds(bundles["av-fbp"], device, str(folder), None, 0)
    mels = feeds.feeds["audio_only"]
    assert len(mels) == 3 and feeds.items == 3 and feeds.source.startswith("audio:")
    # Resampled to the family's rate: frames grow with the clip's seconds.
    frames = [m["mel"].shape[-1] for m in mels]
    assert frames == sorted(frames) and frames[0] < frames[-1]
    again = collect_feeds(bundles["av-fbp"], device, str(folder), 2, 0)
    assert again.items == 2 and again.data_sha256 != feeds.data_sha256


def test_dialog_jsonl_feeds_every_graph_of_the_dialog_family(bundles, device, tmp_path) -> None:
    _write_wav(tmp_path / "a.wav", voiced(1.0, 16000), 16000)
    dialogs = [
        {
            "utterances": [
                {"text": "i got it", "speaker": "A"},
                {"text": "really", "audio": "a.wav"},
            ]
        },
        {"utterances": [{"text": "oh no"}]},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in dialogs) + "\n", encoding="utf-8")
    feeds = collect_feeds(bundles["dialog-m2fnet"], device, str(path), None, 0)
    assert feeds.count("text_encoder") >= 3  # one feed per utterance batch row
    assert feeds.count("audio_encoder") >= 1 and feeds.count("dialog") >= 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"utterances": 5}\n', encoding="utf-8")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        collect_feeds(bundles["dialog-m2fnet"], device, str(bad), None, 0)


def test_image_folder_feeds_the_face_pipeline(face_bundle, device, tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    example = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
    for i in range(2):
        shutil.copy(example, folder / f"a{i}.png")
    feeds = collect_feeds(face_bundle, device, str(folder), None, 0)
    assert feeds.count("classifier") == 2  # one face per image
    assert feeds.count("pnet") > 2 and feeds.count("rnet") > feeds.count("onet") > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no"):
        collect_feeds(face_bundle, device, str(empty), None, 0)
