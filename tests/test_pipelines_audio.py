"""Audio and audio-video pipeline: WAV reading, any rate/layout, the training front-end, video."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk.pipelines.audio_video import best_face
from edge_sdk.pipelines.detector import Detections
from edge_sdk.preprocess.audio import MelConfig, audio_log_mel, read_wav, resample
from edge_sdk.preprocess.video import subsample
from tests.support.bundles import clip, tiny_bundles, voiced
from tests.support.media import float_wav

RATE = 16000


@pytest.fixture(scope="module")
def recognizer(face_bundle, device):
    bundles = tiny_bundles()
    with edge_sdk.load([face_bundle, bundles["face-caf"], bundles["av-fbp"]], device=device) as r:
        yield r


def _pcm_wav(path: Path, samples: np.ndarray, rate: int, width: int) -> Path:
    """Write integer PCM with the stdlib writer (the reference encoder)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    scale = {1: 127, 2: 32767, 4: 2147483647}[width]
    ints = np.round(frames * scale)
    data = (ints + 128).astype(np.uint8) if width == 1 else ints.astype(f"<i{width}")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(frames.shape[1])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(data.tobytes())
    return path



@pytest.mark.parametrize("width", [1, 2, 4])
def test_pcm_wav_reads_back_within_quantisation(tmp_path: Path, width: int) -> None:
    sound = voiced(0.3, 8000, channels=2)
    audio = read_wav(_pcm_wav(tmp_path / "a.wav", sound, 8000, width).read_bytes())
    assert audio.sample_rate == 8000 and audio.samples.shape == sound.shape
    step = {1: 1 / 127, 2: 1 / 32767, 4: 1e-6}[width]
    assert np.abs(audio.samples - sound).max() <= step


def test_float_and_24_bit_wav(tmp_path: Path) -> None:
    sound = voiced(0.25, 22050)
    audio = read_wav(float_wav(sound, 22050))
    assert audio.sample_rate == 22050
    np.testing.assert_array_equal(audio.samples[:, 0], sound)
    ints = np.round(sound * 8388607).astype(np.int32)
    packed = np.stack([ints & 255, (ints >> 8) & 255, (ints >> 16) & 255], axis=1)
    path = tmp_path / "b24.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(3)
        handle.setframerate(22050)
        handle.writeframes(packed.astype(np.uint8).tobytes())
    audio = read_wav(path.read_bytes())
    assert np.abs(audio.samples[:, 0] - sound).max() < 2e-7
    assert audio.samples.min() < 0  # sign extension of negative 24-bit samples


def test_any_rate_and_layout_gives_the_training_features() -> None:
    """Band-limited up-sampling is undone exactly by the front-end's FFT resampler; channel
    layouts (n, c) and (c, n) mix to the same mono signal."""
    config = MelConfig(n_mels=32)
    mono = voiced(1.0, RATE, seed=1)
    want = audio_log_mel((mono, RATE), config)
    high = resample(mono, RATE, 48000)
    np.testing.assert_allclose(audio_log_mel((high, 48000), config), want, atol=1e-4)
    stereo = np.stack([mono, mono], axis=1)
    np.testing.assert_allclose(audio_log_mel((stereo, RATE), config), want, atol=1e-5)
    np.testing.assert_allclose(audio_log_mel((stereo.T.copy(), RATE), config), want, atol=1e-5)
    pcm = np.round(mono * 32767).astype(np.int16)
    np.testing.assert_allclose(audio_log_mel((pcm, RATE), config), want, atol=2e-2)


def test_wav_path_bytes_and_array_agree(recognizer, tmp_path: Path) -> None:
    sound = voiced(1.2, 44100, channels=2, seed=6)
    path = tmp_path / "clip.wav"
    path.write_bytes(float_wav(sound, 44100))
    by_array = recognizer.predict(audio=(sound, 44100)).audio
    for form in (path, str(path), path.read_bytes()):
        got = recognizer.predict(audio=form).audio
        assert got.label == by_array.label
        assert got.probabilities == by_array.probabilities
    assert by_array.mel_frames == 1 + (round(1.2 * RATE) - 400) // 160
    assert abs(by_array.audio_seconds - 1.2) < 0.05


def test_same_audio_at_48k_gives_the_16k_answer(recognizer) -> None:
    mono = voiced(1.0, RATE, seed=7)
    low = recognizer.predict(audio=(mono, RATE)).audio
    high = recognizer.predict(audio=(resample(mono, RATE, 48000), 48000)).audio
    assert low.label == high.label
    diff = np.abs(np.array(list(low.probabilities.values()))
                  - np.array(list(high.probabilities.values())))
    assert diff.max() < 1e-4


def test_video_changes_the_answer_and_faceless_video_falls_back(recognizer) -> None:
    sound = (voiced(1.5, RATE, seed=8), RATE)
    alone = recognizer.predict(audio=sound).audio
    fused = recognizer.predict(audio=sound, video=clip(frames=4))
    assert fused.audio.graph == "audio_video" and fused.audio.fallback is None
    assert fused.audio.frames_used == 4 and fused.audio.video_frames == 4
    assert fused.audio.probabilities != alone.probabilities
    assert fused.audio.backends["regressor"] == fused.audio.backends["audio_video"]
    assert len(fused.video.frames) == 4 and all(len(f.faces) == 1 for f in fused.video.frames)
    assert fused.video.fps > 0
    blank = np.full((3, 96, 128, 3), 90, np.uint8)
    faceless = recognizer.predict(audio=sound, video=blank)
    assert faceless.audio.graph == "audio_only"
    assert faceless.audio.fallback == "no face in any video frame"
    assert faceless.audio.probabilities == alone.probabilities
    assert faceless.video.to_dict()["frames_with_face"] == 0


def test_variable_lengths_run_unpadded(recognizer) -> None:
    """Different clip and video lengths run through the dynamic axes (no padding)."""
    for seconds, frames in ((0.6, 1), (2.5, 6), (7.5, 3)):
        result = recognizer.predict(audio=(voiced(seconds, RATE), RATE), video=clip(frames=frames))
        assert result.audio.mel_frames == 1 + (round(seconds * RATE) - 400) // 160
        assert result.audio.frames_used == frames


def test_frame_helpers() -> None:
    assert subsample(5, 8).tolist() == [0, 1, 2, 3, 4]
    picked = subsample(300, 256)
    assert picked.size == 256 and picked[0] == 0 and picked[-1] == 299
    assert np.all(np.diff(picked) >= 1)
    none = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    some = Detections(np.zeros((3, 4)), np.array([0.8, 0.99, 0.9]), np.zeros((3, 5, 2)))
    assert best_face(none) is None and best_face(some) == 1


def test_without_a_matching_face_encoder_video_is_refused(face_bundle, device) -> None:
    from edge_sdk.errors import BundleError

    bundles = tiny_bundles()
    with edge_sdk.load([face_bundle, bundles["av-fbp"]], device=device) as rec:
        assert rec.predict(audio=(voiced(1.0, RATE), RATE)).audio.graph == "audio_only"
        with pytest.raises(BundleError, match="per-frame face features of width 32"):
            rec.predict(audio=(voiced(1.0, RATE), RATE), video=clip(frames=2))
