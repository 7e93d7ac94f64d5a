"""Family ``face-caf``: person-independent facial valence/arousal (CAF, Kim & Song, AAAI 2021).

Inference graph ``regressor``: an RGB face crop -> encoder f_e (MobileNet-style depthwise
separable CNN, global average pool, linear + LayerNorm to the latent) -> f_r (small MLP, tanh)
-> ``valence_arousal`` in [-1, 1]^2. The latent is a second output, ``features``, so the
audio-video family can reuse this encoder for per-frame face features.

Training adds a critic f_c on the latent features and the losses of
:mod:`edge_sdk.models.face_caf.losses`. The paper alternates critic and encoder updates;
:class:`TrainingRecipe` wants one scalar, so :func:`caf_loss` isolates gradients instead:

* L_AV trains encoder + f_r (the critic does not see it);
* L_c sees ``features.detach()``: it trains only the critic (and the Fisher multiplier,
  whose gradient is reversed for the dual ascent step);
* L_adv runs the critic through ``torch.func.functional_call`` with detached parameters
  (the critic is frozen) on live weak features and detached strong ones: it trains only
  the encoder.

One optimiser step then equals one critic step and one encoder step taken from the same
parameters (simultaneous rather than sequential alternation, n_critic = 1). This differs
from the paper and the authors' script, which update regressor, critic and encoder one after
the other on each batch (three optimiser steps). We keep one step because the generic
trainer, its resume and its seeded determinism are the same for every family, and the
isolation above already gives each player exactly its own gradient; what differs is only
that the encoder's step sees the critic before, not after, that batch's critic step.

Data sets (``TrainingRecipe.datasets``): AffectNet's CSV (face boxes, valence/arousal) or
JSONL with ``valence``/``arousal`` (AFEW-VA frames exported one JSON object per frame). The
face is cut by the deployed rule (:func:`preprocessing_for` through
:func:`edge_sdk.training.faces.face_batch`); without a ``strong`` mask in the batch the
Otsu split runs per batch. Validation is RMSE/PCC/CCC; the best checkpoint has the highest
mean CCC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from edge_sdk.datasets.samples import Sample
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec
from edge_sdk.models.face_caf.losses import (
    av_loss,
    critic_loss,
    fisher_ipm_squared,
    strong_mask,
)
from edge_sdk.models.families import (
    BuiltGraph,
    DatasetTraining,
    Family,
    FamilyBuild,
    TrainingRecipe,
    register_family,
)
from edge_sdk.models.registry import register_architecture

FAMILY = "face-caf"
LABELS = ("valence", "arousal")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CafConfig:
    """Sizes of f_e, f_r, f_c and the loss settings (all JSON values).

    Attributes:
        image_size: side S of the square RGB face crop.
        stem_channels: width of the stride-2 3x3 stem convolution.
        stage_channels: output width of each depthwise-separable block.
        stage_strides: stride of each block's depthwise 3x3 convolution.
        feature_dim: latent width d (the ``features`` output).
        regressor_hidden: hidden width of f_r (0: a single linear layer).
        critic_hidden: hidden width of the critic MLP.
        critic_dim: width of the critic embedding.
        otsu_bins: histogram bins for the per-batch Otsu threshold (batches without "strong").
        weight_av, weight_critic, weight_adversarial: loss weights (the authors' script
            scales the adversarial term by 0.1).
        fisher_rho: augmented-Lagrangian penalty rho (authors: 1e-6).
        mi_variance, mi_max: Gaussian-channel MI variance and clamp (authors: 0.2, 2.5).
        aknn_confidence, aknn_max_k: adaptive-k-NN constant A and largest k (0.7, 10).
        fisher_ridge: relative ridge of the adversarial Fisher-IPM second-moment matrix.
    """

    image_size: int = 64
    stem_channels: int = 8
    stage_channels: tuple[int, ...] = (16, 32, 32)
    stage_strides: tuple[int, ...] = (2, 2, 2)
    feature_dim: int = 32
    regressor_hidden: int = 16
    critic_hidden: int = 32
    critic_dim: int = 16
    otsu_bins: int = 64
    weight_av: float = 1.0
    weight_critic: float = 1.0
    weight_adversarial: float = 0.1
    fisher_rho: float = 1e-6
    mi_variance: float = 0.2
    mi_max: float = 2.5
    aknn_confidence: float = 0.7
    aknn_max_k: int = 10
    fisher_ridge: float = 1e-3

    def __post_init__(self) -> None:
        if len(self.stage_channels) != len(self.stage_strides) or not self.stage_channels:
            raise ValueError("stage_channels and stage_strides need the same, non-zero length")


TINY = CafConfig()
EDGE = CafConfig(
    image_size=112,
    stem_channels=16,
    stage_channels=(32, 64, 64, 128, 128, 256, 256, 256, 512),
    stage_strides=(1, 2, 1, 2, 1, 2, 1, 1, 2),
    feature_dim=128,
    regressor_hidden=64,
    critic_hidden=64,
    critic_dim=16,
    otsu_bins=256,
)

PREPROCESSING = Preprocessing(
    size=(TINY.image_size, TINY.image_size),
    color="rgb",
    scale=1.0 / 255.0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="linear",
    layout="NCHW",
    crop={"square": True, "margin_px": 0},
)


def config_from_dict(values: dict[str, Any]) -> CafConfig:
    """CafConfig from JSON-decoded values (lists become tuples)."""
    return CafConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def preprocessing_for(config: CafConfig) -> Preprocessing:
    """RGB crop of S x S, /255 then ImageNet mean/std (the usual face-CNN normalisation).

    The crop is the detector's box made square without margin: AffectNet's published face
    boxes are already tight crops, so training and deployment see the same framing.
    """
    return dataclasses.replace(PREPROCESSING, size=(config.image_size, config.image_size))


# --- networks ---------------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6: folds into one convolution for TensorRT/ORT."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class CafEncoder(nn.Module):
    """f_e: stem, depthwise-separable blocks (MobileNet v1 style), mean pool, linear + LN."""

    def __init__(self, config: CafConfig) -> None:
        super().__init__()
        layers = [_conv_bn(3, config.stem_channels, 3, 2)]
        cin = config.stem_channels
        for cout, stride in zip(config.stage_channels, config.stage_strides, strict=True):
            layers.append(_conv_bn(cin, cin, 3, stride, groups=cin))
            layers.append(_conv_bn(cin, cout, 1, 1))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(cin, config.feature_dim)
        self.norm = nn.LayerNorm(config.feature_dim)

    def forward(self, face: Tensor) -> Tensor:
        pooled = self.body(face).mean(dim=(2, 3))
        return self.norm(self.project(pooled))


def _regressor_head(config: CafConfig) -> nn.Module:
    """f_r: latent -> 2 pre-tanh values (one hidden ReLU layer unless regressor_hidden is 0)."""
    if config.regressor_hidden <= 0:
        return nn.Linear(config.feature_dim, 2)
    return nn.Sequential(
        nn.Linear(config.feature_dim, config.regressor_hidden),
        nn.ReLU(),
        nn.Linear(config.regressor_hidden, 2),
    )


@register_architecture("face_caf_regressor")
class CafRegressor(nn.Module):
    """The inference graph: face (B, 3, S, S) -> (valence_arousal (B, 2), features (B, d))."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = config_from_dict(config)
        self.encoder = CafEncoder(self.config)
        self.head = _regressor_head(self.config)

    def forward(self, face: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder(face)
        return torch.tanh(self.head(features)), features


class CafCritic(nn.Module):
    """f_c: latent -> critic embedding (training only; never exported)."""

    def __init__(self, config: CafConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.feature_dim, config.critic_hidden),
            nn.ReLU(),
            nn.Linear(config.critic_hidden, config.critic_dim),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class CafModel(nn.Module):
    """Training model: the inference graph, the critic and the Fisher multiplier lambda."""

    def __init__(self, config: CafConfig) -> None:
        super().__init__()
        self.config = config
        self.regressor = CafRegressor(**dataclasses.asdict(config))
        self.critic = CafCritic(config)
        self.fisher_lambda = nn.Parameter(torch.zeros(()))

    def forward(self, face: Tensor) -> tuple[Tensor, Tensor]:
        return self.regressor(face)


def make_model(config: CafConfig) -> CafModel:
    """A freshly initialised training model."""
    return CafModel(config)


# --- training objective -----------------------------------------------------------------------


def caf_loss(model: CafModel, batch: dict[str, Tensor]) -> Tensor:
    """w_av L_AV + w_c L_c + w_adv L_adv with the gradient isolation described in the module.

    ``batch`` holds ``face`` (B, 3, S, S), ``valence_arousal`` (B, 2) and optionally
    ``strong`` (B,) bool, the strong-set mask from a dataset-level Otsu threshold; without it
    Otsu runs on the batch. When a batch has no strong or no weak sample, L_c and L_adv are 0.
    """
    config = model.config
    target = batch["valence_arousal"]
    prediction, features = model(batch["face"])
    total = config.weight_av * av_loss(prediction, target)
    strong = batch.get("strong")
    if strong is None:
        strong = strong_mask(target, bins=config.otsu_bins)
    strong = strong.to(torch.bool)
    if bool(strong.all()) or not bool(strong.any()):
        return total
    strong_idx, weak_idx = torch.nonzero(strong).squeeze(1), torch.nonzero(~strong).squeeze(1)
    embedded = model.critic(features.detach())
    l_critic = critic_loss(
        embedded[strong_idx],
        embedded[weak_idx],
        model.fisher_lambda,
        rho=config.fisher_rho,
        mi_variance=config.mi_variance,
        mi_max=config.mi_max,
        confidence=config.aknn_confidence,
        max_k=config.aknn_max_k,
    )
    frozen = {name: p.detach() for name, p in model.critic.named_parameters()}
    weak_embedded = functional_call(model.critic, frozen, (features[weak_idx],))
    strong_embedded = functional_call(model.critic, frozen, (features[strong_idx].detach(),))
    l_adv = fisher_ipm_squared(weak_embedded, strong_embedded, config.fisher_ridge)
    return total + config.weight_critic * l_critic + config.weight_adversarial * l_adv


def _synthetic_patterns(size: int) -> np.ndarray:
    """Two fixed (3, S, S) patterns whose amplitudes encode valence and arousal."""
    grid = np.arange(size, dtype=np.float64)
    wave_x = 0.5 + 0.5 * np.cos(2.0 * np.pi * grid / 8.0)
    patterns = np.zeros((2, 3, size, size))
    patterns[0, 0] = np.broadcast_to(wave_x[None, :], (size, size))
    patterns[1, 1] = np.broadcast_to(wave_x[:, None], (size, size))
    return patterns


def synthetic_batch(config: CafConfig, rng: np.random.Generator, batch_size: int) -> dict:
    """Faces whose pattern amplitudes are (v, a); intensities are bimodal (weak / strong).

    The target is a deterministic function of the clean image (the pattern amplitudes), with
    Gaussian pixel noise on top, so a few optimiser steps lower L_AV.
    """
    weak = rng.random(batch_size) < 0.5
    radius = np.where(weak, rng.uniform(0.05, 0.35, batch_size), rng.uniform(0.6, 0.95, batch_size))
    angle = rng.uniform(0.0, 2.0 * np.pi, batch_size)
    va = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    patterns = _synthetic_patterns(config.image_size)
    clean = 1.5 * np.einsum("bk,kchw->bchw", va, patterns)
    noise = rng.normal(0.0, 0.3, clean.shape)
    return {
        "face": torch.from_numpy((clean + noise).astype(np.float32)),
        "valence_arousal": torch.from_numpy(va.astype(np.float32)),
    }


# --- export -----------------------------------------------------------------------------------


def export_build(model: CafModel, config: CafConfig) -> FamilyBuild:
    """The ``regressor`` inference graph (encoder + f_r) with the trained weights."""
    module = CafRegressor(**dataclasses.asdict(config))
    module.load_state_dict(model.regressor.state_dict(), strict=True)
    size = config.image_size
    spec = GraphSpec(
        name="regressor",
        architecture="face_caf_regressor",
        inputs=(TensorSpec("face", "float32", ("batch", 3, size, size)),),
        outputs=(
            TensorSpec("valence_arousal", "float32", ("batch", 2), kind="regression"),
            TensorSpec("features", "float32", ("batch", config.feature_dim), kind="embedding"),
        ),
        dims={"batch": DimRange(1, 8, 64)},
        config=dataclasses.asdict(config),
    )
    rng = np.random.default_rng(2021)
    examples = tuple(
        {"face": rng.normal(0.0, 1.0, (n, 3, size, size)).astype(np.float32)} for n in (1, 3, 8)
    )
    return FamilyBuild(
        variant=f"caf-{size}",
        labels=LABELS,
        graphs=(BuiltGraph(spec, module.eval(), examples),),
        preprocessing={"face": preprocessing_for(config)},
        weights=(),
        config={"pipeline": FAMILY, "model": dataclasses.asdict(config), "outputs": list(LABELS)},
    )


# --- data sets --------------------------------------------------------------------------------


def caf_labels(config: CafConfig) -> tuple[str, ...]:
    """The regressor's output order."""
    return LABELS


def caf_batch(
    config: CafConfig, samples: Sequence[Sample], augment: bool, rng: np.random.Generator
) -> dict[str, Tensor]:
    """``face`` crops as deployed and ``valence_arousal`` targets (when every sample has them)."""
    from edge_sdk.training.faces import face_batch

    faces = face_batch(samples, preprocessing_for(config), augment, rng)
    batch = {"face": torch.from_numpy(faces)}
    if samples and all(s.valence is not None and s.arousal is not None for s in samples):
        targets = [(s.valence, s.arousal) for s in samples]
        batch["valence_arousal"] = torch.tensor(targets, dtype=torch.float32)
    return batch


def caf_predict(model: CafModel, batch: dict[str, Tensor]) -> np.ndarray:
    """(n, 2) valence/arousal, the exported ``regressor`` output."""
    return model(batch["face"])[0].detach().cpu().numpy()


DATASETS = DatasetTraining(
    task="valence_arousal",
    formats=("affectnet", "jsonl"),
    labels=caf_labels,
    batch_from_samples=caf_batch,
    predict=caf_predict,
    main_metric="ccc_mean",
)

register_family(
    Family(
        name=FAMILY,
        task="face valence/arousal regression (continuous, [-1, 1]^2)",
        description=(
            "CAF: MobileNet-style face encoder + FC regressor, trained with a contrastive "
            "Fisher-IPM critic between strong and weak emotions (Otsu split)"
        ),
        recipe=TrainingRecipe(
            configs={"tiny": TINY, "edge": EDGE},
            config_type=CafConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=caf_loss,
            export_build=export_build,
            datasets=DATASETS,
        ),
    )
)
