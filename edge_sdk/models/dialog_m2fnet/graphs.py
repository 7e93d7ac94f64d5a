"""M2FNet's four inference graphs: their tensor specs and the examples export traces them on.

``text_encoder``, ``audio_encoder`` and ``visual_encoder`` run once per new utterance and
``dialog`` over the running dialog; each spec names its dynamic dimensions with their
min/opt/max profile, and each graph gets examples at three sizes. The exporter traces a graph
on its first example, which has no dynamic size of 1: the legacy tracer could otherwise bake
it into reshapes (attention over 1 utterance). :func:`edge_sdk.models.dialog_m2fnet.family.
export_build` pairs these with the trained modules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
from edge_sdk.models.dialog_m2fnet.modules import FAMILY, M2FNetConfig

Examples = tuple[dict[str, np.ndarray], ...]


def graph_specs(config: M2FNetConfig) -> dict[str, GraphSpec]:
    """The four inference graphs' tensors and dynamic-dimension profiles."""
    kwargs = dataclasses.asdict(config)
    utt = DimRange(1, 12, config.max_utterances)
    return {
        "text_encoder": _text_spec(config, utt, kwargs),
        "audio_encoder": _audio_spec(config, utt, kwargs),
        "visual_encoder": _visual_spec(config, utt, kwargs),
        "dialog": _dialog_spec(config, utt, kwargs),
    }


def _text_spec(config: M2FNetConfig, utt: DimRange, kwargs: dict[str, Any]) -> GraphSpec:
    positions = config.text_max_positions
    return GraphSpec(
        name="text_encoder",
        architecture=f"{FAMILY}_text_encoder",
        inputs=(
            TensorSpec("input_ids", "int64", ("utterances", "tokens")),
            TensorSpec("attention_mask", "int64", ("utterances", "tokens")),
        ),
        outputs=(
            TensorSpec("embeddings", "float32", ("utterances", config.text_dim), kind="embedding"),
        ),
        dims={
            "utterances": utt,
            "tokens": DimRange(1, min(40, positions), positions),
        },
        config=kwargs,
    )


def _audio_spec(config: M2FNetConfig, utt: DimRange, kwargs: dict[str, Any]) -> GraphSpec:
    return GraphSpec(
        name="audio_encoder",
        architecture=f"{FAMILY}_audio_encoder",
        inputs=(
            TensorSpec("mel", "float32", ("utterances", config.n_mels, "frames")),
            TensorSpec("mel_mask", "float32", ("utterances", "frames")),
        ),
        outputs=(
            TensorSpec(
                "audio_features", "float32", ("utterances", config.audio_dim), kind="embedding"
            ),
        ),
        dims={
            "utterances": utt,
            "frames": DimRange(1, min(300, config.max_audio_frames), config.max_audio_frames),
        },
        config=kwargs,
    )


def _visual_spec(config: M2FNetConfig, utt: DimRange, kwargs: dict[str, Any]) -> GraphSpec:
    s, fs = config.scene_size, config.face_size
    return GraphSpec(
        name="visual_encoder",
        architecture=f"{FAMILY}_visual_encoder",
        inputs=(
            TensorSpec("scene", "float32", ("utterances", "frames", 3, s, s)),
            TensorSpec("frame_mask", "float32", ("utterances", "frames")),
            TensorSpec("faces", "float32", ("utterances", "frames", "faces", 3, fs, fs)),
            TensorSpec("face_areas", "float32", ("utterances", "frames", "faces")),
            TensorSpec("face_mask", "float32", ("utterances", "frames", "faces")),
        ),
        outputs=(
            TensorSpec(
                "visual_features", "float32", ("utterances", config.visual_dim), kind="embedding"
            ),
        ),
        dims={
            "utterances": utt,
            "frames": DimRange(1, config.max_frames, config.max_frames),
            "faces": DimRange(1, min(2, config.max_faces), config.max_faces),
        },
        config=kwargs,
    )


def _dialog_spec(config: M2FNetConfig, utt: DimRange, kwargs: dict[str, Any]) -> GraphSpec:
    return GraphSpec(
        name="dialog",
        architecture=f"{FAMILY}_dialog",
        inputs=(
            TensorSpec("text_features", "float32", ("dialogs", "utterances", config.text_dim)),
            TensorSpec("audio_features", "float32", ("dialogs", "utterances", config.audio_dim)),
            TensorSpec("visual_features", "float32", ("dialogs", "utterances", config.visual_dim)),
            TensorSpec("modality_mask", "float32", ("dialogs", "utterances", 3)),
            TensorSpec("utterance_mask", "float32", ("dialogs", "utterances")),
        ),
        outputs=(
            TensorSpec(
                "logits", "float32", ("dialogs", "utterances", config.num_classes), kind="logits"
            ),
        ),
        dims={"dialogs": DimRange(1, 1, 32), "utterances": utt},
        config=kwargs,
    )


def _utterance_lengths(rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    """Random lengths in [1, length], the first row full."""
    lengths = rng.integers(1, length + 1, size=rows)
    lengths[0] = length
    return lengths


def _prefix_mask(lengths: np.ndarray, length: int, dtype: Any) -> np.ndarray:
    return (np.arange(length)[None, :] < lengths[:, None]).astype(dtype)


def text_examples(config: M2FNetConfig) -> Examples:
    """Token ids and masks: 3 x 17, 1 x 5 and 12 x 40 (utterances x tokens)."""
    rng = np.random.default_rng(10)
    examples = []
    for utterances, tokens in ((3, 17), (1, 5), (12, 40)):
        ids = rng.integers(4, config.text_vocab_size, size=(utterances, tokens)).astype(np.int64)
        mask = _prefix_mask(_utterance_lengths(rng, utterances, tokens), tokens, np.int64)
        examples.append({"input_ids": ids * mask, "attention_mask": mask})
    return tuple(examples)


def audio_examples(config: M2FNetConfig) -> Examples:
    """Log-mels and frame masks: 3 x 37, 1 x 20 and 12 x 64 (utterances x frames)."""
    rng = np.random.default_rng(11)
    examples = []
    for utterances, frames in ((3, 37), (1, 20), (12, 64)):
        mask = _prefix_mask(_utterance_lengths(rng, utterances, frames), frames, np.float32)
        mel = rng.normal(-5.0, 3.0, (utterances, config.n_mels, frames)).astype(np.float32)
        examples.append({"mel": mel * mask[:, None, :], "mel_mask": mask})
    return tuple(examples)


def visual_examples(config: M2FNetConfig) -> Examples:
    """Scenes, faces and masks, one utterance without faces (learned embedding)."""
    rng = np.random.default_rng(12)
    s, fs = config.scene_size, config.face_size
    examples = []
    for utterances, frames, faces in ((3, 4, 2), (1, 1, 1), (12, min(15, config.max_frames), 3)):
        frame_mask = _prefix_mask(_utterance_lengths(rng, utterances, frames), frames, np.float32)
        face_mask = (rng.random((utterances, frames, faces)) < 0.6).astype(np.float32)
        face_mask[0, 0, 0] = 1.0
        if utterances > 1:
            face_mask[1] = 0.0  # an utterance without faces -> learned "no face" embedding
        examples.append(
            {
                "scene": rng.uniform(-1, 1, (utterances, frames, 3, s, s)).astype(np.float32),
                "frame_mask": frame_mask,
                "faces": rng.uniform(-1, 1, (utterances, frames, faces, 3, fs, fs)).astype(
                    np.float32
                ),
                "face_areas": rng.uniform(0.01, 0.6, (utterances, frames, faces)).astype(
                    np.float32
                ),
                "face_mask": face_mask,
            }
        )
    return tuple(examples)


def dialog_examples(config: M2FNetConfig) -> Examples:
    """Utterance features of 2 x 3 (one padded dialog), 1 x 1 and 1 x 12 dialogs."""
    rng = np.random.default_rng(13)
    examples = []
    for dialogs, utterances in ((2, 3), (1, 1), (1, 12)):
        utterance_mask = np.ones((dialogs, utterances), dtype=np.float32)
        if dialogs > 1:
            utterance_mask[1, utterances - 1 :] = 0.0  # a shorter, padded dialog
        modality_mask = (rng.random((dialogs, utterances, 3)) < 0.75).astype(np.float32)
        modality_mask[..., 0] = 1.0
        modality_mask *= utterance_mask[..., None]

        def features(width: int, d: int = dialogs, u: int = utterances) -> np.ndarray:
            return rng.normal(0.0, 1.0, (d, u, width)).astype(np.float32)

        examples.append(
            {
                "text_features": features(config.text_dim),
                "audio_features": features(config.audio_dim),
                "visual_features": features(config.visual_dim),
                "modality_mask": modality_mask,
                "utterance_mask": utterance_mask,
            }
        )
    return tuple(examples)
