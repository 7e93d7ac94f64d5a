"""Family ``av-fbp``: audio + video attention streams fused by factorized bilinear pooling.

Spec section 4 (seed 003). Audio: log-mel (from :mod:`edge_sdk.preprocess.audio`) -> fully
convolutional network -> grid of L = F' * T' cells -> scaled attention pooling -> a (m = C).
Video: per-frame face features v_i (the face family's encoder output, D = ``face_dim``) ->
ṽ_i = W v_i + b -> the same attention over frames -> ṽ (n = ``video_dim``).
Fusion (MFB): z = SumPool(Ũ^T a ∘ Ṽ^T ṽ, k) -> signed sqrt -> L2 -> dropout -> 7 AFEW logits.

Exported graphs (the inference graphs):

* ``audio_video``: ``mel`` (batch, 1, n_mels, frames) + ``face_features`` (batch, video_frames,
  D) -> ``logits`` (batch, 7). All clips of one call share their frame counts (no masks in the
  graph): the device runs one clip per call, or batches clips of equal length. Training
  batches of mixed lengths use ``mel_lengths`` / ``face_mask`` instead.
* ``audio_only``: ``mel`` -> ``logits`` through a separate audio-only head on a, for when no
  face is visible. It is trained jointly with the fused head; modality dropout (see
  :func:`av_fbp_loss`) drops the video of random samples so the audio encoder must carry the
  class information on its own rather than only as a complement to the face stream.

Dynamic dims: batch; frames from 0.5 s to 8 s of audio at the MelConfig hop (48 to 798 frames
at 16 kHz, hop 160); video_frames 1 to 256 (8 s at 30 fps). The FCN's ceil-mode pooling keeps at
least one cell for any input length, so short clips need no padding or shape arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from edge_sdk.datasets.afew import AFEW_LABELS  # class order = AFEW emotion folders
from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
from edge_sdk.models.av_fbp.blocks import AudioFCN, FactorizedBilinearPooling, ScaledAttentionPool
from edge_sdk.models.av_fbp.datasets import (  # the graphs' profiles are the adapter's too
    AUDIO_SECONDS,  # noqa: F401 - importable from here as before
    DATASETS,
    VIDEO_FRAMES,
    frame_range,
    mel_frames,  # noqa: F401
)
from edge_sdk.models.families import (
    BuiltGraph,
    Family,
    FamilyBuild,
    TrainingRecipe,
    register_family,
)
from edge_sdk.models.registry import register_architecture
from edge_sdk.preprocess.audio import MelConfig, log_mel

FAMILY = "av-fbp"
BATCH = DimRange(1, 1, 16)


@dataclass(frozen=True)
class AvFbpConfig:
    """Sizes of the av-fbp model (all JSON values).

    Attributes:
        n_mels: mel bands of the log-mel input (MelConfig.n_mels).
        audio_channels: FCN widths, one conv + 2x2 ceil-mode pool per stage; m = last width.
        face_dim: D, width of the per-frame face features (128 = mini-XCEPTION's last block).
        video_dim: n, width of ṽ_i = W v_i + b (the reduction before attention).
        attention_dim: width of the hidden tanh layer of both attention blocks.
        attention_lambda: λ in [0, 1] of alpha = softmax(λ e) (1 = softmax, 0 = mean).
        fbp_factor: k, rank of each factorized bilinear form (MFB's default is 5).
        fbp_out: o, output width of the fusion.
        power_eps: eps of the signed square root (bounds its slope by 1 / (2 sqrt(eps))).
        dropout: dropout before both classifiers.
        modality_dropout: probability that a training sample's video is dropped.
        audio_loss_weight: weight of the audio-only head's cross entropy.
        face_encoder: digest (``sha256:<hex>``) of the face bundle whose per-frame features
            the model was trained on ("" for generated features); the bundle records it and
            a Recognizer refuses another bundle of that family beside it.
        face_encoder_family: that bundle's family (e.g. ``"face-caf"``).
        face_bundle: where that bundle lay while training (training only; blanked at
            export, the digest is what identifies it).
    """

    n_mels: int = 64
    audio_channels: tuple[int, ...] = (16, 32, 64, 128)
    face_dim: int = 128
    video_dim: int = 128
    attention_dim: int = 64
    attention_lambda: float = 1.0
    fbp_factor: int = 5
    fbp_out: int = 128
    power_eps: float = 1e-6
    dropout: float = 0.2
    modality_dropout: float = 0.3
    audio_loss_weight: float = 0.5
    face_encoder: str = ""
    face_encoder_family: str = ""
    face_bundle: str = ""

    def mel(self) -> MelConfig:
        """The shared front-end's settings for this model."""
        return MelConfig(n_mels=self.n_mels)


CONFIGS = {
    "tiny": AvFbpConfig(
        n_mels=32,
        audio_channels=(4, 8),
        face_dim=16,
        video_dim=16,
        attention_dim=8,
        fbp_factor=3,
        fbp_out=16,
        dropout=0.1,
    ),
    "edge": AvFbpConfig(),
}


def _config(config: dict[str, Any]) -> AvFbpConfig:
    """Keyword config (possibly with JSON lists) -> AvFbpConfig."""
    return AvFbpConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


class _AvFbpParts(nn.Module):
    """The sub-networks, built selectively so every graph's state_dict is a training subset."""

    def __init__(self, config: AvFbpConfig, *, fused: bool, audio_only: bool) -> None:
        super().__init__()
        self.config = config
        self.audio_fcn = AudioFCN(tuple(config.audio_channels))
        m = self.audio_fcn.out_channels
        self.audio_attention = ScaledAttentionPool(m, config.attention_dim, config.attention_lambda)
        if fused:
            self.video_proj = nn.Linear(config.face_dim, config.video_dim)
            self.video_attention = ScaledAttentionPool(
                config.video_dim, config.attention_dim, config.attention_lambda
            )
            self.fusion = FactorizedBilinearPooling(
                m, config.video_dim, config.fbp_factor, config.fbp_out, config.power_eps
            )
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(config.fbp_out, len(AFEW_LABELS))
            )
        if audio_only:
            self.audio_head = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(m, len(AFEW_LABELS))
            )

    def audio_embedding(
        self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 1, n_mels, frames) -> a (B, m); ``mel_lengths`` masks right-padded frames."""
        cells = self.audio_fcn(mel)
        mask = None
        if mel_lengths is not None:
            mask = self.audio_fcn.cell_mask(mel_lengths, mel.shape[-1], mel.shape[-2])
        return self.audio_attention(cells, mask)

    def video_embedding(
        self, face_features: torch.Tensor, face_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, frames, D) -> ṽ (B, n); ``face_mask`` (B, frames) bool marks real frames."""
        return self.video_attention(self.video_proj(face_features), face_mask)

    def fused_logits(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fusion(a, v))


class AvFbpModel(_AvFbpParts):
    """Training model: both streams, the fused head and the audio-only head."""

    def __init__(self, config: AvFbpConfig) -> None:
        super().__init__(config, fused=True, audio_only=True)

    def forward(
        self,
        mel: torch.Tensor,
        face_features: torch.Tensor,
        mel_lengths: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused logits, audio-only logits), each (B, 7)."""
        a = self.audio_embedding(mel, mel_lengths)
        v = self.video_embedding(face_features, face_mask)
        return self.fused_logits(a, v), self.audio_head(a)


@register_architecture("av-fbp_audio_video")
class AvFbpAudioVideo(_AvFbpParts):
    """Inference graph ``audio_video``: (mel, face_features) -> logits; config = AvFbpConfig."""

    def __init__(self, **config: Any) -> None:
        super().__init__(_config(config), fused=True, audio_only=False)

    def forward(self, mel: torch.Tensor, face_features: torch.Tensor) -> torch.Tensor:
        return self.fused_logits(self.audio_embedding(mel), self.video_embedding(face_features))


@register_architecture("av-fbp_audio_only")
class AvFbpAudioOnly(_AvFbpParts):
    """Inference graph ``audio_only``: mel -> logits (no face visible); config = AvFbpConfig."""

    def __init__(self, **config: Any) -> None:
        super().__init__(_config(config), fused=False, audio_only=True)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio_embedding(mel))


def make_model(config: AvFbpConfig) -> AvFbpModel:
    """The full training model."""
    return AvFbpModel(config)


def av_fbp_loss(model: AvFbpModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L = mean_i [ keep_i * CE(fused_i, y_i) + w * CE(audio_i, y_i) ].

    keep_i ~ Bernoulli(1 - ``modality_dropout``) in training mode (1 in eval mode, so the
    loss of an eval model is deterministic): a sample whose video is dropped trains only the
    audio path, as at run time when no face is visible. w = ``audio_loss_weight``. The review
    names no loss; cross entropy on the 7 AFEW classes is the paper's classification objective.
    """
    fused, audio = model(
        batch["mel"], batch["face_features"], batch.get("mel_lengths"), batch.get("face_mask")
    )
    labels = batch["labels"]
    fused_ce = F.cross_entropy(fused, labels, reduction="none")
    audio_ce = F.cross_entropy(audio, labels, reduction="none")
    keep = torch.ones_like(fused_ce)
    if model.training and model.config.modality_dropout > 0:
        keep = (torch.rand_like(fused_ce) >= model.config.modality_dropout).to(fused_ce.dtype)
    return (keep * fused_ce + model.config.audio_loss_weight * audio_ce).mean()


def class_prototypes(config: AvFbpConfig) -> np.ndarray:
    """(7, D) fixed unit-norm face-feature directions of the synthetic task."""
    protos = np.random.default_rng(2019).normal(size=(len(AFEW_LABELS), config.face_dim))
    return protos / np.linalg.norm(protos, axis=1, keepdims=True)


def synthetic_labels(
    config: AvFbpConfig,
    mel: np.ndarray,
    mel_lengths: np.ndarray,
    faces: np.ndarray,
    face_mask: np.ndarray,
) -> np.ndarray:
    """Label = argmax_c (mean log-mel energy of band c + mean face projection on prototype c).

    Band c covers mel bins [c w, (c + 1) w), w = n_mels // 8, over the clip's valid frames.
    A deterministic function of the inputs, so the task is learnable by both streams.
    """
    width = config.n_mels // 8
    protos = class_prototypes(config)
    scores = np.zeros((mel.shape[0], len(AFEW_LABELS)))
    for i in range(mel.shape[0]):
        clip = mel[i, 0, :, : mel_lengths[i]]
        bands = clip[: width * len(AFEW_LABELS)].reshape(len(AFEW_LABELS), width, -1)
        scores[i] += bands.mean(axis=(1, 2))
        scores[i] += (faces[i, face_mask[i]] @ protos.T).mean(axis=0)
    return scores.argmax(axis=1)


def synthetic_batch(
    config: AvFbpConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """Noise log-mels and face features with a class band / class prototype injected.

    Clips have different audio lengths (``mel_lengths``) and face-frame counts
    (``face_mask``), right-padded with zeros, so the masks are exercised in training.
    """
    n_classes = len(AFEW_LABELS)
    frames = int(rng.integers(48, 129))
    video_frames = int(rng.integers(2, 13))
    width = config.n_mels // 8
    cls = rng.integers(0, n_classes, batch_size)
    mel_lengths = rng.integers(frames // 2, frames + 1, batch_size)
    mel_lengths[0] = frames
    face_counts = rng.integers(1, video_frames + 1, batch_size)
    mel = rng.normal(0.0, 1.0, (batch_size, 1, config.n_mels, frames))
    faces = rng.normal(0.0, 1.0, (batch_size, video_frames, config.face_dim))
    protos = class_prototypes(config)
    face_mask = np.arange(video_frames)[None] < face_counts[:, None]
    for i, c in enumerate(cls):
        mel[i, 0, c * width : (c + 1) * width] += 2.0
        mel[i, :, :, mel_lengths[i] :] = 0.0
        faces[i] += 2.0 * protos[c]
    faces[~face_mask] = 0.0
    labels = synthetic_labels(config, mel, mel_lengths, faces, face_mask)
    return {
        "mel": torch.tensor(mel, dtype=torch.float32),
        "mel_lengths": torch.tensor(mel_lengths, dtype=torch.int64),
        "face_features": torch.tensor(faces, dtype=torch.float32),
        "face_mask": torch.tensor(face_mask),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _example_mel(seconds: float, mel: MelConfig, seed: int) -> np.ndarray:
    """(1, 1, n_mels, frames) log-mel of a synthetic voiced waveform via the shared front-end."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * mel.sample_rate)) / mel.sample_rate
    pitch = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / mel.sample_rate
    wave = sum(np.sin(h * phase) / h for h in range(1, 12)) + 0.05 * rng.normal(size=t.shape)
    return log_mel(wave.astype(np.float32), mel.sample_rate, mel)[None, None]


def _examples(config: AvFbpConfig) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(audio_video, audio_only) feeds at 2 s / 0.5 s / 8 s, 4 / 1 / 16 face frames."""
    mel = config.mel()
    sizes = ((2.0, 4, 2), (0.5, 1, 1), (8.0, 16, 1))  # first = trace size: batch 2, generic
    both, audio = [], []
    for seed, (seconds, video_frames, batch) in enumerate(sizes):
        spec = np.concatenate([_example_mel(seconds, mel, seed + b) for b in range(batch)])
        faces = np.random.default_rng(10 + seed).normal(size=(batch, video_frames, config.face_dim))
        both.append({"mel": spec, "face_features": faces.astype(np.float32)})
        audio.append({"mel": spec})
    return tuple(both), tuple(audio)


def export_build(model: AvFbpModel, config: AvFbpConfig) -> FamilyBuild:
    """The two inference graphs with the trained weights and examples at 3 dynamic sizes."""
    config = dataclasses.replace(config, face_bundle="")  # a training machine's path
    mel = config.mel()
    frames = frame_range(mel)
    mel_spec = TensorSpec("mel", "float32", ("batch", 1, config.n_mels, "frames"))
    logits = TensorSpec("logits", "float32", ("batch", len(AFEW_LABELS)), kind="logits")
    as_json = dataclasses.asdict(config)
    state = model.state_dict()
    both_examples, audio_examples = _examples(config)
    graphs = []
    for name, cls, inputs, dims, examples in (
        (
            "audio_video",
            AvFbpAudioVideo,
            (
                mel_spec,
                TensorSpec("face_features", "float32", ("batch", "video_frames", config.face_dim)),
            ),
            {"batch": BATCH, "frames": frames, "video_frames": VIDEO_FRAMES},
            both_examples,
        ),
        (
            "audio_only",
            AvFbpAudioOnly,
            (mel_spec,),
            {"batch": BATCH, "frames": frames},
            audio_examples,
        ),
    ):
        module = cls(**as_json)
        module.load_state_dict({k: state[k] for k in module.state_dict()}, strict=True)
        spec = GraphSpec(
            name=name,
            architecture=f"{FAMILY}_{name}",
            inputs=inputs,
            outputs=(logits,),
            dims=dims,
            config=as_json,
        )
        graphs.append(BuiltGraph(spec, module.eval(), examples))
    variant = next((n for n, c in CONFIGS.items() if c == config), "custom")
    return FamilyBuild(
        variant=variant,
        labels=AFEW_LABELS,
        graphs=tuple(graphs),
        preprocessing={},
        weights=(),
        config={
            "pipeline": FAMILY,
            "model": as_json,
            "mel": dataclasses.asdict(mel),
            "face_features": {
                "dim": config.face_dim,
                "source": "per-frame embedding of the bundle's face encoder",
                **(
                    {
                        "encoder_digest": config.face_encoder,
                        "encoder_family": config.face_encoder_family,
                    }
                    if config.face_encoder
                    else {}
                ),
            },
            "fallback": "audio_only when no frame of the clip has a face",
        },
    )


register_family(
    Family(
        name=FAMILY,
        task="audio-video emotion categories (AFEW, 7 classes)",
        description=(
            "log-mel FCN + face-feature attention streams fused by factorized bilinear pooling"
        ),
        recipe=TrainingRecipe(
            configs=CONFIGS,
            config_type=AvFbpConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=av_fbp_loss,
            export_build=export_build,
            datasets=DATASETS,
        ),
    )
)
