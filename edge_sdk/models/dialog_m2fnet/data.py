"""M2FNet's synthetic training dialogs, made through the deployed front-ends.

Every modality of an utterance encodes its label (an emotion word in the text, a pitch in the
audio, a tint and stripes in the video), and each goes through the same tokenizer and log-mel
front-end that deployment uses, so the training recipe, the export checks and INT8
calibration see inputs of the real shapes and ranges. Kept apart from
:mod:`edge_sdk.models.dialog_m2fnet.family`, which registers the family, because the three
generators are most of the family's code.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_sdk.models.dialog_m2fnet.modules import M2FNetConfig
from edge_sdk.models.dialog_m2fnet.modules import mel_config as mel_config  # re-exported
from edge_sdk.models.dialog_m2fnet.text import EMOTION_WORDS, FILLER_WORDS, tokenize
from edge_sdk.preprocess.audio import log_mel

IGNORE = -100  # label of padded utterances


def _palette(classes: int) -> np.ndarray:
    """A fixed colour per class for synthetic scenes (same for every call)."""
    return np.random.default_rng(1234).uniform(-0.8, 0.8, (classes, 3)).astype(np.float32)


def synthetic_batch(
    config: M2FNetConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """Dialogs whose every modality encodes the utterance's label, through the real front-ends.

    Text: filler words plus the label's emotion word, tokenised by the deployed tokenizer.
    Audio: a tone at a label-specific pitch (200 * 1.6**label Hz) through ``log_mel``.
    Visual: scenes tinted by a per-label colour, faces striped at a per-label frequency, with
    random face counts and areas. Dialog lengths vary (padding + ``utterance_mask``); audio
    and video are missing for some utterances (``modality_mask``), text never, so the label
    stays a function of the inputs.
    """
    k, classes = config.synthetic_utterances, config.num_classes
    lengths = rng.integers(max(1, k // 2), k + 1, size=batch_size)
    lengths[0] = k
    valid = np.arange(k)[None, :] < lengths[:, None]
    labels = rng.integers(0, classes, size=(batch_size, k))
    presence = np.ones((batch_size, k, 3), dtype=np.float32)
    presence[..., 1:] = rng.random((batch_size, k, 2)) >= 0.2
    presence *= valid[..., None]
    flat_labels, flat_presence = labels.reshape(-1), presence.reshape(-1, 3)
    # the generators draw from ``rng`` in this order: text, audio, visual
    tokens = _synthetic_tokens(config, rng, flat_labels, flat_presence[:, 0])
    mel, mel_mask = _synthetic_mels(config, rng, flat_labels, flat_presence[:, 1])
    visual = _synthetic_visual(config, rng, flat_labels, flat_presence[:, 2])
    batch = {
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "mel": mel,
        "mel_mask": mel_mask,
        **visual,
        "modality_mask": presence,
        "utterance_mask": valid.astype(np.float32),
        "labels": np.where(valid, labels, IGNORE).astype(np.int64),
    }
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in batch.items()}


def _synthetic_tokens(
    config: M2FNetConfig, rng: np.random.Generator, labels: np.ndarray, present: np.ndarray
) -> dict[str, np.ndarray]:
    """Filler words with the label's emotion word inserted, tokenised ("" where absent)."""
    texts = []
    for i in range(labels.shape[0]):
        if not present[i]:
            texts.append("")
            continue
        words = list(rng.choice(FILLER_WORDS, size=int(rng.integers(2, 6))))
        words.insert(int(rng.integers(0, len(words) + 1)), EMOTION_WORDS[labels[i]])
        texts.append(" ".join(words))
    return tokenize(texts, config.text_model, config.max_tokens)


def _synthetic_mels(
    config: M2FNetConfig, rng: np.random.Generator, labels: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mels of a tone at the label's pitch, padded to the longest, and their frame mask."""
    mel_cfg = mel_config(config)
    mels = []
    for i in range(labels.shape[0]):
        if not present[i]:
            mels.append(None)
            continue
        samples = int(config.synthetic_seconds * mel_cfg.sample_rate * rng.uniform(0.7, 1.0))
        t = np.arange(samples) / mel_cfg.sample_rate
        pitch = 200.0 * 1.6 ** labels[i]
        wave = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(4 * np.pi * pitch * t)
        wave = wave + 0.05 * rng.standard_normal(samples)
        mels.append(log_mel(wave.astype(np.float32), mel_cfg.sample_rate, mel_cfg))
    frames = (
        max(m.shape[1] for m in mels if m is not None) if any(m is not None for m in mels) else 1
    )
    mel = np.zeros((len(mels), config.n_mels, frames), dtype=np.float32)
    mel_mask = np.zeros((len(mels), frames), dtype=np.float32)
    for i, m in enumerate(mels):
        if m is not None:
            mel[i, :, : m.shape[1]] = m
            mel_mask[i, : m.shape[1]] = 1.0
    return mel, mel_mask


def _synthetic_visual(
    config: M2FNetConfig, rng: np.random.Generator, labels: np.ndarray, present: np.ndarray
) -> dict[str, np.ndarray]:
    """Scenes tinted by the label's colour and faces striped at its frequency, with masks."""
    count = labels.shape[0]
    nf, nfaces = config.synthetic_frames, min(config.max_faces, 2)
    s, fs = config.scene_size, config.face_size
    colours = _palette(config.num_classes)
    scene = np.zeros((count, nf, 3, s, s), dtype=np.float32)
    faces = np.zeros((count, nf, nfaces, 3, fs, fs), dtype=np.float32)
    frame_mask = np.zeros((count, nf), dtype=np.float32)
    face_mask = np.zeros((count, nf, nfaces), dtype=np.float32)
    face_areas = np.zeros((count, nf, nfaces), dtype=np.float32)
    rows = np.arange(fs, dtype=np.float32)[:, None] / fs
    for i in range(count):
        if not present[i]:
            continue
        used = int(rng.integers(1, nf + 1))
        frame_mask[i, :used] = 1.0
        tint = colours[labels[i]][:, None, None]
        scene[i, :used] = tint + 0.3 * rng.standard_normal((used, 3, s, s))
        stripes = 0.8 * np.cos(2 * np.pi * (labels[i] + 1) * rows) * np.ones((1, fs))
        for f in range(used):
            shown = int(rng.integers(0, nfaces + 1))
            face_mask[i, f, :shown] = 1.0
            face_areas[i, f, :shown] = rng.uniform(0.02, 0.5, shown)
            faces[i, f, :shown] = stripes + 0.3 * rng.standard_normal((shown, 3, fs, fs))
    return {
        "scene": scene,
        "frame_mask": frame_mask,
        "faces": faces,
        "face_areas": face_areas,
        "face_mask": face_mask,
    }
