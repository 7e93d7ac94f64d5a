"""Family ``face-expclip``: Exp-CLIP zero-shot facial expression recognition (spec section 3).

Inference: face crop -> CLIP image encoder e_I -> projection head P_θ (one bias-free linear
matrix, ``clip_embed_dim`` -> ``proj_dim``; 512 x 4096 in the paper) -> L2-normalised embedding;
each class prompt ``prompt_template`` -> CLIP text encoder e_P -> the same P_θ -> normalised class
prototype; logits = ``logit_scale`` * cosine(P_θ(e_I), P_θ(e_P_k)).

Edge split: the prototypes depend only on the vocabulary, so :func:`recompute_prototypes` runs
the text tower at export time and the ``zero_shot`` graph stores them as a constant buffer; the
device runs only image tower + projection + cosine and needs no tokenizer or text tower. To change
the vocabulary, export again with ``dataclasses.replace(config, vocabulary=...)`` (the training
model keeps the text tower, so no retraining is needed).

Training (projection head only; both CLIP towers frozen): InfoNCE between P_θ(e_I) and the
teacher embedding e_G of the same image (an LLM encoding of an image-to-text description,
precomputed and fed in the batch as ``teacher``, width ``proj_dim``); the other images' e_G in
the batch are the negatives. See :func:`info_nce` for the exact form and the temperature.

Optimiser and schedule (the recipe's ``optimizer``, used by both trainers): the paper trains
P_θ with SGD, lr 1e-3, batch 512, 5 epochs, on 224x224 faces; the authors' ``train.py`` adds
momentum 0.9 and weight decay 1e-4 (its defaults), which :func:`expclip_optimizer` uses, with
the learning rate of the run (``--lr``; give 1e-3 and ``--batch-size 512`` to follow the
paper). The batch size is part of the objective, not only of the speed: InfoNCE's negatives
are the other B-1 teacher embeddings, a loss of log B is chance and log B - L bounds the
mutual information it certifies, so losses (and the learnt P_θ) compare only at equal B.

Where we differ from the authors' code: their ``test.py`` feeds ``Resize(224)`` +
``ToTensor`` (no CLIP mean/std) and averages the logits over several prompt templates; we
normalise with CLIP's mean/std in training and deployment alike (:func:`face_preprocessing`)
and use one template (``prompt_template``). Their ``train.py`` also uses the symmetric CLIP
loss (image->text and text->image halves) and drops the last short batch; we use the one
direction the spec states (:func:`info_nce`) and keep the short batch. The ``edge`` size
crops 112x112 faces with smaller towers than ViT-B.

Data sets (``TrainingRecipe.datasets``): face images of RAF-DB (aligned), CAER-S, FER2013,
AffectNet (face box) or a class folder, with a teacher file giving e_G per sample id
(:mod:`edge_sdk.training.data` documents the ``.npz`` format and the ids). Faces are cut by
the deployed rule (:func:`face_preprocessing`). Validation is zero-shot over the vocabulary,
as deployed: softmax of ``logit_scale`` * cosine to the prototypes of the current P_θ, scored
UAR/WAR (the best checkpoint has the highest UAR); the labels need no teacher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from edge_sdk.datasets.samples import Sample
from edge_sdk.int8_policy import Int8Policy
from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec
from edge_sdk.models.clip_towers import (
    CHAR_VOCAB_SIZE,
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

FAMILY = "face-expclip"
# RAF-DB's label order (1..7 in its files).
RAFDB_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
PROMPT_TEMPLATE = "a photo of a face with an expression of {class}."
BATCH = DimRange(1, 1, 32)
_SYNTHETIC_RANK = 6  # latent factors behind synthetic images and their teacher embeddings


@dataclass(frozen=True)
class ExpClipConfig:
    """Sizes and settings of Exp-CLIP (all JSON values).

    Attributes:
        clip_checkpoint: local Hugging Face CLIP folder ("" = random towers of the shape below;
            fill the ``clip_*``/``text_*`` fields with ``tower_fields_from_checkpoint``).
        clip_hidden, clip_layers, clip_heads, clip_mlp, clip_image_size, clip_patch: ViT image
            tower shape; ``clip_image_size`` is the face crop side S.
        clip_embed_dim: CLIP's joint embedding width (input of P_θ; 512 for ViT-B).
        clip_act: activation of both towers (CLIP uses quick_gelu).
        text_hidden, text_layers, text_heads, text_mlp, text_vocab, text_max_len: text tower
            shape (export-time only).
        proj_dim: output width of P_θ = the teacher (LLM) embedding width (4096 in the paper).
        vocabulary: class names, in label order.
        prompt_template: prompt with a ``{class}`` placeholder.
        logit_scale: fixed multiplier of the cosines in the exported logits (CLIP's 100).
        temperature: InfoNCE temperature τ (0.07, CLIP's initial value; the review gives none).
    """

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
    proj_dim: int = 256
    vocabulary: tuple[str, ...] = RAFDB_LABELS
    prompt_template: str = PROMPT_TEMPLATE
    logit_scale: float = 100.0
    temperature: float = 0.07


CONFIGS = {
    "tiny": ExpClipConfig(),
    "edge": ExpClipConfig(
        clip_hidden=256,
        clip_layers=4,
        clip_heads=4,
        clip_mlp=1024,
        clip_image_size=112,
        clip_patch=16,
        clip_embed_dim=256,
        text_hidden=256,
        text_layers=4,
        text_heads=4,
        text_mlp=1024,
        proj_dim=1024,
    ),
}


def _config(values: dict[str, Any]) -> ExpClipConfig:
    """Config from JSON-decoded keyword args (lists back to tuples)."""
    return ExpClipConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def prompts_for(config: ExpClipConfig, vocabulary: tuple[str, ...]) -> list[str]:
    """The class prompts: ``prompt_template`` with ``{class}`` replaced by each name."""
    return [config.prompt_template.replace("{class}", name) for name in vocabulary]


def info_nce(image: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Image-to-teacher InfoNCE over the batch.

    With cosine similarities s_ij = <P_θ(e_I_i)/|.|, e_G_j/|.|>,
    L = -1/B Σ_i log( exp(s_ii / τ) / Σ_j exp(s_ij / τ) ).
    One direction only, as the spec states it: each image is pulled to its own teacher
    embedding and pushed from the other images' (the teacher is fixed, so the reverse
    direction would only re-weight the same negatives).
    """
    image = F.normalize(image, dim=-1)
    teacher = F.normalize(teacher, dim=-1)
    logits = image @ teacher.T / temperature
    targets = torch.arange(image.shape[0], device=image.device)
    return F.cross_entropy(logits, targets)


class ExpClipModel(nn.Module):
    """Training model: frozen CLIP towers + the trainable projection head P_θ."""

    def __init__(self, config: ExpClipConfig) -> None:
        super().__init__()
        self.config = config
        self.image_tower = freeze(load_vision_tower(config))
        self.text_tower = freeze(load_text_tower(config))
        self.projection = nn.Linear(config.clip_embed_dim, config.proj_dim, bias=False)
        self.tokenizer = PromptTokenizer.for_fields(config)

    def train(self, mode: bool = True) -> ExpClipModel:
        """Train the head only; the frozen towers stay in eval mode."""
        super().train(mode)
        self.image_tower.eval()
        self.text_tower.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised faces -> (B, proj_dim) P_θ(e_I), not normalised."""
        with torch.no_grad():
            features = self.image_tower(pixel_values=images).image_embeds
        return self.projection(features)


def recompute_prototypes(model: ExpClipModel, vocabulary: tuple[str, ...]) -> torch.Tensor:
    """(k, proj_dim) L2-normalised class prototypes P_θ(e_P_k) for a vocabulary."""
    prompts = prompts_for(model.config, tuple(vocabulary))
    device = model.projection.weight.device
    if device.type == "cpu":
        text = encode_prompts(model.text_tower, model.tokenizer, prompts)
    else:  # validation while training on a GPU: the tokenizer's ids are CPU tensors
        ids, mask = model.tokenizer(prompts)
        with torch.no_grad():
            text = model.text_tower(input_ids=ids.to(device), attention_mask=mask.to(device))
            text = text.text_embeds
    with torch.no_grad():
        return F.normalize(model.projection(text), dim=-1)


@register_architecture("face-expclip_zero_shot")
class ExpClipZeroShot(nn.Module):
    """Exported graph: image tower + P_θ + cosine against stored prototypes.

    Inputs: ``image`` (batch, 3, S, S). Outputs: ``logits`` (batch, k) = logit_scale * cosine,
    ``embedding`` (batch, proj_dim), L2-normalised. The prototypes are a persistent buffer,
    written at export time by :func:`recompute_prototypes`.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = _config(config)
        self.logit_scale = float(cfg.logit_scale)
        self.image_tower = build_vision_tower(cfg)
        self.projection = nn.Linear(cfg.clip_embed_dim, cfg.proj_dim, bias=False)
        self.register_buffer("prototypes", torch.zeros(len(cfg.vocabulary), cfg.proj_dim))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.image_tower(pixel_values=image).image_embeds
        embedding = F.normalize(self.projection(features), dim=-1)
        logits = self.logit_scale * embedding @ self.prototypes.T
        return logits, embedding


def make_model(config: ExpClipConfig) -> ExpClipModel:
    """The training model (towers from ``clip_checkpoint`` or random)."""
    return ExpClipModel(config)


def synthetic_batch(
    config: ExpClipConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """Images and teacher embeddings driven by the same latent factors.

    Each image is a mix of fixed random patterns with coefficients a_i (plus noise); its
    teacher embedding is a fixed linear map of the same a_i, so P_θ can learn to match them.
    """
    size = config.clip_image_size
    fixed = np.random.default_rng(2024)
    patterns = fixed.normal(0.0, 1.0, (_SYNTHETIC_RANK, 3 * size * size))
    to_teacher = fixed.normal(0.0, 1.0, (_SYNTHETIC_RANK, config.proj_dim))
    coefficients = rng.normal(0.0, 1.0, (batch_size, _SYNTHETIC_RANK))
    images = coefficients @ patterns / np.sqrt(_SYNTHETIC_RANK)
    images += 0.1 * rng.normal(0.0, 1.0, images.shape)
    teacher = coefficients @ to_teacher
    return {
        "images": torch.from_numpy(images.reshape(batch_size, 3, size, size).astype(np.float32)),
        "teacher": torch.from_numpy(teacher.astype(np.float32)),
    }


def loss(model: ExpClipModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The whole Exp-CLIP objective: :func:`info_nce` (P_θ(e_I), e_G) with τ from the config."""
    return info_nce(model(batch["images"]), batch["teacher"], model.config.temperature)


def export_build(model: ExpClipModel, config: ExpClipConfig) -> FamilyBuild:
    """The ``zero_shot`` graph with the vocabulary's prototypes baked in."""
    graph_config = dataclasses.asdict(config)
    module = ExpClipZeroShot(**graph_config)
    module.image_tower.load_state_dict(model.image_tower.state_dict(), strict=True)
    module.projection.load_state_dict(model.projection.state_dict(), strict=True)
    with torch.no_grad():
        module.prototypes.copy_(recompute_prototypes(model, config.vocabulary))
    size, k = config.clip_image_size, len(config.vocabulary)
    spec = GraphSpec(
        name="zero_shot",
        architecture="face-expclip_zero_shot",
        inputs=(TensorSpec("image", "float32", ("batch", 3, size, size)),),
        outputs=(
            TensorSpec("logits", "float32", ("batch", k), kind="logits"),
            TensorSpec("embedding", "float32", ("batch", config.proj_dim), kind="embedding"),
        ),
        dims={"batch": BATCH},
        config=graph_config,
    )
    rng = np.random.default_rng(7)
    examples = tuple(
        {"image": rng.normal(0.0, 1.0, (b, 3, size, size)).astype(np.float32)} for b in (1, 2, 5)
    )
    return FamilyBuild(
        variant="clip-checkpoint" if config.clip_checkpoint else "clip-random",
        labels=tuple(config.vocabulary),
        graphs=(BuiltGraph(spec, module.eval(), examples),),
        preprocessing={"face": face_preprocessing(config)},
        weights=clip_weight_sources(config),
        config={
            "pipeline": FAMILY,
            "model": graph_config,
            "prompts": prompts_for(config, config.vocabulary),
        },
    )


def face_preprocessing(config: ExpClipConfig) -> Preprocessing:
    """CLIP's normalisation on the detector box made square, no margin (aligned-face framing)."""
    return dataclasses.replace(
        clip_preprocessing(config.clip_image_size), crop={"square": True, "margin_px": 0}
    )


# --- data sets --------------------------------------------------------------------------------
TEACHER = "teacher"  # Sample.extra key (edge_sdk.training.data.TEACHER_KEY)


def expclip_labels(config: ExpClipConfig) -> tuple[str, ...]:
    """The vocabulary, in the order of the exported logits."""
    return tuple(config.vocabulary)


def teacher_width(config: ExpClipConfig) -> int:
    """Width of e_G: P_θ's output width."""
    return int(config.proj_dim)


def expclip_batch(
    config: ExpClipConfig, samples: Sequence[Sample], augment: bool, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """``images`` as deployed, and ``teacher`` (e_G) when every sample carries one."""
    from edge_sdk.training.faces import face_batch

    images = face_batch(samples, face_preprocessing(config), augment, rng)
    batch = {"images": torch.from_numpy(images)}
    teachers = [s.extra.get(TEACHER) for s in samples]
    if samples and all(t is not None for t in teachers):
        batch["teacher"] = torch.from_numpy(np.stack(teachers).astype(np.float32))
    return batch


def expclip_predict(model: ExpClipModel, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """(n, k) softmax of the ``zero_shot`` graph's logits, prototypes from the current P_θ."""
    with torch.no_grad():
        prototypes = recompute_prototypes(model, model.config.vocabulary)
        embedding = F.normalize(model(batch["images"]), dim=-1)
        logits = model.config.logit_scale * embedding @ prototypes.to(embedding.device).T
        return torch.softmax(logits, dim=-1).cpu().numpy()


def expclip_optimizer(parameters: list[Any], lr: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 and weight decay 1e-4, as the authors train P_θ (module docs)."""
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4)


DATASETS = DatasetTraining(
    task="classification",
    formats=("rafdb", "caer-s", "folder", "fer2013", "affectnet"),
    labels=expclip_labels,
    batch_from_samples=expclip_batch,
    predict=expclip_predict,
    main_metric="uar",
    teacher_dim=teacher_width,
)


def calibration_feeds(batch: dict[str, np.ndarray], run: object) -> dict[str, dict]:
    """INT8 calibration: the generated ``images`` are the ``zero_shot`` graph's ``image``."""
    del run  # one graph, nothing upstream
    return {"zero_shot": {"image": batch["images"].astype(np.float32)}}


register_family(
    Family(
        name=FAMILY,
        task="zero-shot face expression categories (any vocabulary; RAF-DB 7 by default)",
        description="Exp-CLIP: CLIP image tower + LLM-distilled projection head, cosine to "
        "precomputed prompt prototypes",
        recipe=TrainingRecipe(
            configs=CONFIGS,
            config_type=ExpClipConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=loss,
            export_build=export_build,
            calibration_feeds=calibration_feeds,
            datasets=DATASETS,
            optimizer=expclip_optimizer,
        ),
        # The patch-embedding Conv and the MLPs stay FP32 (benchmarks/int8_decisions.md).
        int8=Int8Policy(
            op_types=("MatMul", "Gemm"),
            exclude_nodes={"zero_shot": ("*/mlp/fc1/MatMul", "*/mlp/fc2/MatMul")},
            center_activations=True,
            quantize_outputs=False,
        ),
    )
)
