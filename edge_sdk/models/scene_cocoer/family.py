"""Family ``scene-cocoer``: CocoER multi-level scene emotion recognition (spec section 1).

Steps implemented here (the workspace QP, step 7, runs later in a PyTorch sidecar):

1. Windows: :func:`edge_sdk.preprocess.windows.scene_windows` (context = whole image, body box
   or a documented expansion of the head box, head box), all resized to ``window_size``.
2. Backbones R_c, R_b, R_h: one small CNN per level (:class:`LevelBackbone`).
3. Patch embedding E_m: N = hw/p^2 patches of p^2 c values -> d_h (``attn_dim``).
4. Cross-level attention T_{h,c}, T_{b,c} and context self-attention T_{c,c}
   (:class:`CrossLevelAttention`), mean over tokens.
5. Level heads g_θm: hidden layer(s) to d (= ``clip_embed_dim``, the width the spec gives
   z_m and z_t), then a bias-free prediction layer θ_l^m (d x k). F = softmax (single-label,
   CAER-S) or sigmoid (``multi_label``, EMOTIC).
6. Vocabulary-informed alignment: frozen CLIP image tower u_img, frozen text tower on the
   prompts -> U_text, ω (d x d) pre-trained by the recipe's ``pretrain`` stage (Eq. 10,
   before the main stage) then frozen;
   z_t = hidden(FFN1(ω^T u_img)), y_t = F(FFN1 output). Only FFN1 trains with CocoER.
   u_img and U_text are L2-normalised (CLIP's usual practice, so the ω regression does not
   depend on the towers' scale) and ω starts at the identity.

Exported graphs: ``levels`` (context, body, head -> z_c, z_b, z_h = hidden outputs of g, the
inputs of θ_l, and ``level_logits`` (batch, 3, k) in c, b, h order, before F) and
``alignment`` (image -> y_t after F, z_t). The θ_l weights the workspace needs are in the
``levels`` graph's safetensors (``heads.<level>.predict.weight``).

Training objective: :func:`cocoer_loss` = L_hier + L_t + alpha L_ω, in
:mod:`edge_sdk.models.scene_cocoer.losses` (with F, L(s, t), :func:`omega_loss` and
:func:`pretrain_omega`, importable from here as before).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from edge_sdk.errors import WeightsError
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec
from edge_sdk.models.clip_towers import (
    CHAR_VOCAB_SIZE,
    CLIP_MEAN,
    CLIP_STD,
    PromptTokenizer,
    build_vision_tower,
    clip_preprocessing,
    clip_weight_sources,
    encode_prompts,
    freeze,
    load_text_tower,
    load_vision_tower,
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
from edge_sdk.models.scene_cocoer.blocks import (
    CrossLevelAttention,
    LevelBackbone,
    LevelHead,
    PatchEmbedding,
)
from edge_sdk.models.scene_cocoer.losses import activate, cocoer_loss, pretrain_stage
from edge_sdk.models.scene_cocoer.losses import level_loss as level_loss  # re-exported
from edge_sdk.models.scene_cocoer.losses import omega_loss as omega_loss  # re-exported
from edge_sdk.models.scene_cocoer.losses import pretrain_omega as pretrain_omega  # re-exported
from edge_sdk.models.scene_cocoer.losses import targets as targets  # re-exported
from edge_sdk.models.scene_cocoer.settings import (
    cocoer_deploy_settings,
    cocoer_predict,
    cocoer_predict_settings,
)
from edge_sdk.preprocess.windows import WINDOW_NAMES

FAMILY = "scene-cocoer"
CAER_S_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
EMOTIC_LABELS = (
    "affection", "anger", "annoyance", "anticipation", "aversion", "confidence", "disapproval",
    "disconnection", "disquietment", "doubt/confusion", "embarrassment", "engagement", "esteem",
    "excitement", "fatigue", "fear", "happiness", "pain", "peace", "pleasure", "sadness",
    "sensitivity", "suffering", "surprise", "sympathy", "yearning",
)  # fmt: skip
PROMPT_TEMPLATE = "a photo of a person who feels {emotion}."
BATCH = DimRange(1, 1, 16)
LEVEL_OUTPUTS = ("z_c", "z_b", "z_h")


@dataclass(frozen=True)
class CocoErConfig:
    """Sizes and settings of CocoER (all JSON values).

    Attributes:
        window_size: side of the three square windows (H = W).
        backbone_channels: widths of the backbone stages (each halves the resolution), c last.
        patch: patch side p on the backbone map (h = w = window_size / 2^stages, divisible by p).
        attn_dim: d_h, token width of the attention blocks.
        ffn_mult: FFN0 hidden width = ffn_mult * d_h.
        head_layers: hidden layers of each g_θm (d_h -> d, then d -> d).
        vocabulary: class names in label order (k = len).
        multi_label: F = sigmoid (EMOTIC) instead of softmax (CAER-S).
        prompt_template: class prompt with an ``{emotion}`` placeholder.
        pseudo_weight: β, weight of the pseudo-label term of L_hier.
        omega_weight: alpha, weight of the ω alignment term.
        workspace_eta: η, step size of the workspace coordination (used by the sidecar).
        clip_*, text_*: CLIP tower shapes (see :mod:`edge_sdk.models.clip_towers`);
            ``clip_embed_dim`` is d.
    """

    window_size: int = 32
    backbone_channels: tuple[int, ...] = (8, 16)
    patch: int = 2
    attn_dim: int = 16
    ffn_mult: int = 2
    head_layers: int = 1
    vocabulary: tuple[str, ...] = CAER_S_LABELS
    multi_label: bool = False
    prompt_template: str = PROMPT_TEMPLATE
    pseudo_weight: float = 0.5
    omega_weight: float = 1.0
    workspace_eta: float = 1.0
    clip_checkpoint: str = ""
    clip_hidden: int = 32
    clip_layers: int = 2
    clip_heads: int = 2
    clip_mlp: int = 64
    clip_image_size: int = 32
    clip_patch: int = 8
    clip_embed_dim: int = 32
    clip_act: str = "quick_gelu"
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    text_mlp: int = 64
    text_vocab: int = CHAR_VOCAB_SIZE
    text_max_len: int = 77

    def __post_init__(self) -> None:
        side = self.window_size // 2 ** len(self.backbone_channels)
        if side * 2 ** len(self.backbone_channels) != self.window_size or side % self.patch:
            raise ValueError(
                f"window_size {self.window_size} must give a backbone map divisible by patch "
                f"{self.patch} after {len(self.backbone_channels)} stride-2 stages"
            )


_EDGE = {
    "window_size": 112,
    "backbone_channels": (24, 48, 96),
    "patch": 2,
    "attn_dim": 128,
    "clip_hidden": 256,
    "clip_layers": 4,
    "clip_heads": 4,
    "clip_mlp": 1024,
    "clip_image_size": 112,
    "clip_patch": 16,
    "clip_embed_dim": 256,
    "text_hidden": 256,
    "text_layers": 4,
    "text_heads": 4,
    "text_mlp": 1024,
}
CONFIGS = {
    "tiny": CocoErConfig(),
    "edge": CocoErConfig(**_EDGE),
    "edge-emotic": CocoErConfig(**_EDGE, vocabulary=EMOTIC_LABELS, multi_label=True),
}


def _config(values: dict[str, Any]) -> CocoErConfig:
    """Config from JSON-decoded keyword args (lists back to tuples)."""
    return CocoErConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def prompts_for(config: CocoErConfig) -> list[str]:
    """The k class prompts S_k."""
    return [config.prompt_template.replace("{emotion}", name) for name in config.vocabulary]


@register_architecture("scene-cocoer_levels")
class CocoErLevels(nn.Module):
    """Steps 2-5 as one graph: windows -> (z_c, z_b, z_h, level_logits (B, 3, k))."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = _config(config)
        channels = cfg.backbone_channels[-1]
        k, d = len(cfg.vocabulary), cfg.clip_embed_dim
        self.backbones = nn.ModuleDict(
            {m: LevelBackbone(cfg.backbone_channels) for m in WINDOW_NAMES}
        )
        self.embeddings = nn.ModuleDict(
            {m: PatchEmbedding(channels, cfg.patch, cfg.attn_dim) for m in WINDOW_NAMES}
        )
        self.attention = nn.ModuleDict(
            {m: CrossLevelAttention(cfg.attn_dim, cfg.ffn_mult) for m in WINDOW_NAMES}
        )
        self.heads = nn.ModuleDict(
            {m: LevelHead(cfg.attn_dim, d, cfg.head_layers, k) for m in WINDOW_NAMES}
        )

    def forward(
        self, context: torch.Tensor, body: torch.Tensor, head: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        windows = {"context": context, "body": body, "head": head}
        tokens = {m: self.embeddings[m](self.backbones[m](windows[m])) for m in WINDOW_NAMES}
        hidden, logits = [], []
        for m in WINDOW_NAMES:  # T_{c,c}, T_{b,c}, T_{h,c}
            z = self.attention[m](tokens[m], tokens["context"])
            h, s = self.heads[m](z)
            hidden.append(h)
            logits.append(s)
        return hidden[0], hidden[1], hidden[2], torch.stack(logits, dim=1)


@register_architecture("scene-cocoer_alignment")
class CocoErAlignment(nn.Module):
    """Step 6 as one graph: image -> (y_t = F(FFN1(ω^T u_img)), z_t)."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = _config(config)
        d, k = cfg.clip_embed_dim, len(cfg.vocabulary)
        self.multi_label = bool(cfg.multi_label)
        self.image_tower = build_vision_tower(cfg)
        self.omega = nn.Parameter(torch.eye(d))
        self.ffn1_hidden = nn.Sequential(nn.Linear(d, d), nn.GELU())
        self.ffn1_out = nn.Linear(d, k)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """u_img: L2-normalised CLIP image embedding (B, d)."""
        return F.normalize(self.image_tower(pixel_values=image).image_embeds, dim=-1)

    def pseudo_logits(self, u_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(FFN1 logits (B, k), z_t (B, d)) from u_img; ω^T u for row vectors is u ω."""
        z_t = self.ffn1_hidden(u_img @ self.omega)
        return self.ffn1_out(z_t), z_t

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, z_t = self.pseudo_logits(self.image_features(image))
        return activate(logits, self.multi_label), z_t


def encode_vocabulary(config: CocoErConfig) -> torch.Tensor:
    """U_text as rows: (k, d) L2-normalised text embeddings of the class prompts."""
    text_tower = load_text_tower(config)
    tokenizer = PromptTokenizer.for_fields(config)
    return F.normalize(encode_prompts(text_tower, tokenizer, prompts_for(config)), dim=-1)


class CocoErModel(nn.Module):
    """Training model: the two graphs' modules plus U_text (a buffer, so checkpoints hold it)."""

    def __init__(self, config: CocoErConfig) -> None:
        super().__init__()
        self.config = config
        values = dataclasses.asdict(config)
        self.levels = CocoErLevels(**values)
        self.alignment = CocoErAlignment(**values)
        if config.clip_checkpoint:
            state = load_vision_tower(config).state_dict()
            self.alignment.image_tower.load_state_dict(state, strict=True)
        freeze(self.alignment.image_tower)
        self.alignment.omega.requires_grad_(False)
        self.register_buffer("text_embeds", encode_vocabulary(config))

    def train(self, mode: bool = True) -> CocoErModel:
        """Train mode everywhere but the frozen CLIP image tower."""
        super().train(mode)
        self.alignment.image_tower.eval()
        return self


def make_model(config: CocoErConfig) -> CocoErModel:
    """The training model, ω at the identity: the recipe's ``pretrain`` stage
    (:func:`~edge_sdk.models.scene_cocoer.losses.pretrain_stage`) fits and freezes it before
    the main stage."""
    return CocoErModel(config)


def synthetic_batch(
    config: CocoErConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """Windows and whole image mixed from fixed per-class patterns; labels from the mix.

    Coefficients a_i (one per class) weight fixed random patterns (different per window and
    for the whole image) plus noise; the label is argmax a_i, or a_ik > 0.5 (multi-label).
    """
    k, size, clip = len(config.vocabulary), config.window_size, config.clip_image_size
    fixed = np.random.default_rng(2025)
    coefficients = rng.normal(0.0, 1.0, (batch_size, k))
    batch: dict[str, torch.Tensor] = {}
    for name, side in (*((m, size) for m in WINDOW_NAMES), ("image", clip)):
        patterns = fixed.normal(0.0, 1.0, (k, 3 * side * side))
        values = coefficients @ patterns / np.sqrt(k)
        values += 0.1 * rng.normal(0.0, 1.0, values.shape)
        batch[name] = torch.from_numpy(values.reshape(batch_size, 3, side, side).astype(np.float32))
    if config.multi_label:
        batch["labels"] = torch.from_numpy((coefficients > 0.5).astype(np.float32))
    else:
        batch["labels"] = torch.from_numpy(coefficients.argmax(axis=1).astype(np.int64))
    return batch


def windows_preprocessing(config: CocoErConfig) -> Preprocessing:
    """The three windows: RGB boxes resized to ``window_size``, CLIP mean/std (NCHW)."""
    return Preprocessing(
        size=(config.window_size, config.window_size),
        color="rgb",
        scale=1.0 / 255.0,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        interpolation="linear",
        layout="NCHW",
    )


def export_build(model: CocoErModel, config: CocoErConfig) -> FamilyBuild:
    """The ``levels`` and ``alignment`` graphs with the trained weights."""
    values = dataclasses.asdict(config)
    levels, alignment = CocoErLevels(**values), CocoErAlignment(**values)
    try:
        levels.load_state_dict(model.levels.state_dict(), strict=True)
        alignment.load_state_dict(model.alignment.state_dict(), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"model does not fit {config}: {exc}") from exc
    k, d, size, clip = (
        len(config.vocabulary),
        config.clip_embed_dim,
        config.window_size,
        config.clip_image_size,
    )
    window = ("batch", 3, size, size)
    # Multi-label (EMOTIC) scores are per-class sigmoids; CAER-S is one softmax decision.
    level_kind = "multilabel_logits" if config.multi_label else "logits"
    pseudo_kind = "binary" if config.multi_label else "probabilities"
    levels_spec = GraphSpec(
        name="levels",
        architecture="scene-cocoer_levels",
        inputs=tuple(TensorSpec(m, "float32", window) for m in WINDOW_NAMES),
        outputs=(
            *(
                TensorSpec(name, "float32", ("batch", d), kind="embedding")
                for name in LEVEL_OUTPUTS
            ),
            TensorSpec("level_logits", "float32", ("batch", len(WINDOW_NAMES), k), kind=level_kind),
        ),
        dims={"batch": BATCH},
        config=values,
    )
    alignment_spec = GraphSpec(
        name="alignment",
        architecture="scene-cocoer_alignment",
        inputs=(TensorSpec("image", "float32", ("batch", 3, clip, clip)),),
        outputs=(
            TensorSpec("y_t", "float32", ("batch", k), kind=pseudo_kind),
            TensorSpec("z_t", "float32", ("batch", d), kind="embedding"),
        ),
        dims={"batch": BATCH},
        config=values,
    )
    rng = np.random.default_rng(11)
    sizes = (1, 2, 5)

    def feed(b: int, side: int) -> np.ndarray:
        return rng.normal(0.0, 1.0, (b, 3, side, side)).astype(np.float32)

    levels_examples = tuple({m: feed(b, size) for m in WINDOW_NAMES} for b in sizes)
    alignment_examples = tuple({"image": feed(b, clip)} for b in sizes)
    return FamilyBuild(
        variant="clip-checkpoint" if config.clip_checkpoint else "clip-random",
        labels=tuple(config.vocabulary),
        graphs=(
            BuiltGraph(levels_spec, levels.eval(), levels_examples),
            BuiltGraph(alignment_spec, alignment.eval(), alignment_examples),
        ),
        preprocessing={"windows": windows_preprocessing(config), "image": clip_preprocessing(clip)},
        weights=clip_weight_sources(config),
        config={
            "pipeline": FAMILY,
            "model": values,
            "activation": "sigmoid" if config.multi_label else "softmax",
            "workspace": {"eta": config.workspace_eta, "levels": list(LEVEL_OUTPUTS)},
            "prompts": prompts_for(config),
        },
    )


# --- data sets --------------------------------------------------------------------------------
def cocoer_labels(config: CocoErConfig) -> tuple[str, ...]:
    """The vocabulary, in the order of the exported level logits."""
    return tuple(config.vocabulary)


def cocoer_main_metric(config: CocoErConfig) -> str:
    """mAP picks the best EMOTIC (multi-label) checkpoint, UAR a CAER-S one."""
    return "map" if config.multi_label else "uar"


def cocoer_prepare(config: CocoErConfig, dataset: Any, context: Any) -> Any:
    """Head and body boxes per sample, found once as check accuracy finds them."""
    del config  # the boxes do not depend on the model
    from edge_sdk.training.scenes import locate_people

    return locate_people(dataset, context)


def cocoer_batch(
    config: CocoErConfig, samples: Any, augment: bool, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """The three windows and the whole image as deployed, and the labels (class indices, or
    multi-hot rows for ``multi_label``)."""
    from edge_sdk.training.scenes import scene_batch

    prep = clip_preprocessing(config.clip_image_size)
    arrays = scene_batch(samples, windows_preprocessing(config), prep, augment, rng)
    batch = {name: torch.from_numpy(values) for name, values in arrays.items()}
    if config.multi_label:
        rows = np.asarray([s.targets for s in samples], dtype=np.float32)
        batch["labels"] = torch.from_numpy(rows.reshape(len(samples), -1))
    else:
        batch["labels"] = torch.as_tensor([s.label for s in samples], dtype=torch.int64)
    return batch


DATASETS = DatasetTraining(
    task="classification",
    formats=("caer-s", "emotic"),
    labels=cocoer_labels,
    batch_from_samples=cocoer_batch,
    predict=cocoer_predict,
    main_metric=cocoer_main_metric,
    prepare=cocoer_prepare,
    deploy_settings=cocoer_deploy_settings,
    predict_settings=cocoer_predict_settings,
)


register_family(
    Family(
        name=FAMILY,
        task="scene emotion of one person from context, body and head windows "
        "(CAER-S 7 classes; EMOTIC 26 multi-label)",
        description="CocoER: per-level CNNs + cross-level attention, CLIP vocabulary-informed "
        "pseudo labels (workspace competition/coordination runs in the PyTorch sidecar)",
        recipe=TrainingRecipe(
            configs=CONFIGS,
            config_type=CocoErConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=cocoer_loss,
            export_build=export_build,
            datasets=DATASETS,
            pretrain=pretrain_stage,
        ),
    )
)
