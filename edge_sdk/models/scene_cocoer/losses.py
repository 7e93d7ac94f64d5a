"""CocoER's training objective: F, the level loss L(s, t), the ω alignment and the total.

With L(s, t) = soft-target cross-entropy of logits s against a distribution t (softmax) or
mean binary cross-entropy (sigmoid):

    L_hier = 1/3 Σ_m [ L(s_m, y) + β L(s_m, sg(y_t)) ]      β = ``pseudo_weight``
    L_t    = L(s_t, y)                                       trains FFN1 (the review trains
                                                             it with CocoER, against labels)
    L_ω    = :func:`omega_loss` with the label weighting     alpha = ``omega_weight``
    total  = L_hier + L_t + alpha L_ω                        (:func:`cocoer_loss`)

y_t is detached as a target (sg): it guides the levels, the levels do not pull it. ω is fitted
by the recipe's stage before the main one (:func:`pretrain_stage`, Eq. 10; the trainer calls it
through ``TrainingRecipe.pretrain``) and frozen, so alpha L_ω carries no gradient in the default
recipe (it reports how well the frozen alignment fits); unfreezing ω (``requires_grad_``)
trains it jointly through this term. Kept apart from the graphs in
:mod:`edge_sdk.models.scene_cocoer.family` so the workspace and its tests can name the maths
without the model code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F  # noqa: N812

from edge_sdk.errors import InputError
from edge_sdk.preprocess.windows import WINDOW_NAMES

# ω pre-training (Eq. 10): a d x d least-squares fit, converged well within these steps
OMEGA_STEPS = 200
OMEGA_LR = 1e-2

if TYPE_CHECKING:
    from edge_sdk.models.scene_cocoer.family import CocoErConfig, CocoErModel


def activate(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """F: sigmoid for multi-label data, softmax over the classes otherwise."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def targets(labels: torch.Tensor, config: CocoErConfig) -> torch.Tensor:
    """Labels -> float targets (B, k): one-hot class indices, or multi-hot rows as given."""
    if config.multi_label:
        return labels.float()
    return F.one_hot(labels.long(), len(config.vocabulary)).float()


def level_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """L(s, t): mean BCE (sigmoid) or soft-target cross-entropy -Σ t log softmax(s) (softmax)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def omega_loss(
    u_img: torch.Tensor,
    omega: torch.Tensor,
    text_embeds: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """D(Û_img, U_text) = ||ω^T Û_img - U_text||^2 per image, averaged over the batch.

    Column k of the difference is ω^T u_img - u_text_k. Without ``weights`` the k columns
    count equally (the literal formula, divided by k). With ``weights`` (B, k) (the labels)
    column k counts w_k / Σ w: each image is pulled to its own emotion prototypes, which is
    the review's stated intent ("closer to the emotion prototype"); the unweighted form would
    pull every image to the mean prompt.
    """
    aligned = u_img @ omega  # ω^T u for each row
    squared = (aligned[:, None, :] - text_embeds[None, :, :]).pow(2).sum(dim=-1)  # (B, k)
    if weights is None:
        weights = torch.ones_like(squared)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return (weights * squared).sum(dim=-1).mean()


def pretrain_omega(
    model: CocoErModel,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    steps: int = 200,
    lr: float = 1e-2,
) -> list[float]:
    """Stage 1: fit ω alone on :func:`omega_loss` (Adam, full batch), then freeze it.

    Args:
        model: the training model (its frozen image tower and U_text are used).
        images: (n, 3, S, S) CLIP-normalised whole images.
        labels: class indices / multi-hot rows for the label-weighted form, or None.

    Returns:
        The loss before each step.
    """
    with torch.no_grad():
        u_img = model.alignment.image_features(images)
    weights = None if labels is None else targets(labels, model.config)
    return _fit_omega(model, u_img, weights, steps, lr)


def _fit_omega(
    model: CocoErModel,
    u_img: torch.Tensor,
    weights: torch.Tensor | None,
    steps: int,
    lr: float,
) -> list[float]:
    """Adam on ω alone over fixed image features; ω is left frozen and without a gradient."""
    alignment = model.alignment
    alignment.omega.requires_grad_(True)
    optimiser = torch.optim.Adam([alignment.omega], lr=lr)
    history = []
    try:
        for _ in range(steps):
            optimiser.zero_grad()
            value = omega_loss(u_img, alignment.omega, model.text_embeds, weights)
            value.backward()
            optimiser.step()
            history.append(float(value.detach()))
    finally:
        alignment.omega.requires_grad_(False)
        alignment.omega.grad = None
    return history


def pretrain_stage(model: CocoErModel, batches: Iterable[dict[str, torch.Tensor]]) -> None:
    """The recipe's stage before the main one (Eq. 10): fit ω on every training batch's whole
    image (label-weighted :func:`omega_loss`), then freeze it with both CLIP towers.

    Image features are computed batch by batch in one pass (the tower is frozen, so once is
    enough, and the data set trainer's batches are loaded lazily, readable once); only the
    (n, d) features and (n, k) weights stay in memory. Without this stage ω would stay the
    identity and the pseudo label y_t would not depend on the vocabulary's text embeddings.
    """
    features, weights = [], []
    with torch.no_grad():
        for batch in batches:
            features.append(model.alignment.image_features(batch["image"]))
            weights.append(targets(batch["labels"], model.config))
    if not features:
        raise InputError("the ω pre-training stage got no training batch")
    _fit_omega(model, torch.cat(features), torch.cat(weights), OMEGA_STEPS, OMEGA_LR)


def cocoer_loss(model: CocoErModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Full objective L_hier + L_t + alpha L_ω (the module docstring gives each term)."""
    config = model.config
    multi = config.multi_label
    *_, level_logits = model.levels(batch["context"], batch["body"], batch["head"])
    u_img = model.alignment.image_features(batch["image"])
    t_logits, _ = model.alignment.pseudo_logits(u_img)
    y = targets(batch["labels"], config)
    y_t = activate(t_logits, multi).detach()
    hier = sum(
        level_loss(level_logits[:, m], y, multi)
        + config.pseudo_weight * level_loss(level_logits[:, m], y_t, multi)
        for m in range(len(WINDOW_NAMES))
    ) / len(WINDOW_NAMES)
    align = omega_loss(u_img, model.alignment.omega, model.text_embeds, y)
    return hier + level_loss(t_logits, y, multi) + config.omega_weight * align
