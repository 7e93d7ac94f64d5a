"""M2FNet feature-extractor losses: adaptive-margin triplet, variance and covariance.

The paper (Chudasama et al., CVPR-W 2022, Eqs. 9-13) trains the audio and visual extractors
with ``λ1 L_AMT + λ2 L_var + λ3 L_cov`` on projected embeddings Z (N x d). The forms below
are the paper's; where the review leaves details open, the choice is written next to it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def pair_distance(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distance D_S between rows (Eq. 10), on the raw embeddings.

    Not normalised: the hinge of Eq. 10 must be able to reach zero once D_an and D_pn exceed
    D_ap by the margin (2 to 6 here), which a distance bounded by 1 never allows. The scale
    is set by the variance term (Eq. 12 keeps every dimension's std above ``floor``, 1), as in
    VICReg, so the margins are meaningful in embedding units.
    """
    return torch.sqrt(((x - y) ** 2).sum(-1).clamp(min=1e-12))


def pair_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Similarity in [0, 1] that drives the adaptive margin: 1 - |x̂ - ŷ| / 2 on unit rows.

    A Euclidean-distance-based similarity (1 = same direction, 0 = opposite), independent of
    the embedding scale, so the margin's exponentials stay in the paper's range.
    """
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.nn.functional.normalize(y, dim=-1)
    return 1.0 - 0.5 * torch.sqrt(((x - y) ** 2).sum(-1).clamp(min=1e-12))


def adaptive_margin(sim_ap: Tensor, sim_an: Tensor) -> Tensor:
    """Eq. 11: m_AM = m_sim + m_dissim, from the similarity of the similar pair (a, p) and of
    the dissimilar pair (a, n):  m_sim = 1 + 2 / exp(4 sim_ap),  m_dissim = 1 + 2 / exp(4 - 4
    sim_an).

    Both grow with the triplet's hardness (a positive pointing away, a negative pointing
    toward the anchor: each up to 3) and shrink to 1 + 2/e^4 for easy pairs, so the margin
    adapts per triplet within [2.04, 6]. Reading the arguments as similarities (the review:
    "sim = similarity, dissim = dissimilarity") is what makes both parts grow with hardness;
    fed with distances, m_dissim would grow as the negative moves away.
    """
    return (1.0 + 2.0 * torch.exp(-4.0 * sim_ap)) + (1.0 + 2.0 * torch.exp(4.0 * sim_an - 4.0))


def adaptive_margin_triplet(anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
    """Eq. 10, mean over triplets: max(0, D_ap - (D_an + D_pn) / 2 + m_AM).

    Distances are Euclidean on the raw embeddings (:func:`pair_distance`), so well-separated
    triplets cost nothing; the margin (:func:`adaptive_margin`) is differentiated like the
    rest of the loss (the paper has no stop-gradient): its gradient raises sim_ap and lowers
    sim_an, the same directions as the distance terms, so it adds a pull that a constant
    margin does not have.
    """
    d_ap = pair_distance(anchor, positive)
    d_an = pair_distance(anchor, negative)
    d_pn = pair_distance(positive, negative)
    margin = adaptive_margin(pair_similarity(anchor, positive), pair_similarity(anchor, negative))
    return torch.relu(d_ap - 0.5 * (d_an + d_pn) + margin).mean()


def batch_hard_triplets(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(anchor, positive, negative) index triples by batch-hard mining.

    The paper forms triplets as FaceNet does (online mining); we take, for every anchor that
    has both a positive (same label, other row) and a negative, the farthest positive and the
    nearest negative under :func:`pair_distance`. Deterministic, so tests can check it.
    """
    with torch.no_grad():
        n = embeddings.shape[0]
        if n == 0:  # a batch whose every utterance is unlabelled (e.g. all mapped away)
            empty = torch.zeros(0, dtype=torch.long, device=embeddings.device)
            return empty, empty, empty
        dist = pair_distance(embeddings[:, None, :], embeddings[None, :, :])
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=embeddings.device)
        pos_mask, neg_mask = same & ~eye, ~same
        usable = pos_mask.any(1) & neg_mask.any(1)
        pos = torch.where(pos_mask, dist, torch.full_like(dist, -1.0)).argmax(1)
        neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).argmin(1)
        anchors = torch.nonzero(usable).flatten()
    return anchors, pos[anchors], neg[anchors]


def mined_triplet_loss(embeddings: Tensor, labels: Tensor) -> Tensor:
    """L_AMT over batch-hard triplets; 0 (still on the graph) when no triplet exists."""
    a, p, n = batch_hard_triplets(embeddings, labels)
    if a.numel() == 0:
        return embeddings.sum() * 0.0
    return adaptive_margin_triplet(embeddings[a], embeddings[p], embeddings[n])


def variance_loss(z: Tensor, floor: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Eq. 12: mean over dims of max(0, floor - sqrt(Var(z_j) + eps)), unbiased variance.

    A hinge on each dimension's standard deviation keeps the embedding from collapsing.
    """
    if z.shape[0] < 2:
        return z.sum() * 0.0
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return torch.relu(floor - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Eq. 13: sum of squared off-diagonal entries of Cov(z) (N - 1 normaliser), over d.

    Decorrelates the dimensions so that they carry different information.
    """
    n, d = z.shape
    if n < 2:
        return z.sum() * 0.0
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return (off**2).sum() / d


def extractor_loss(
    z: Tensor,
    labels: Tensor,
    *,
    lambda_triplet: float,
    lambda_variance: float,
    lambda_covariance: float,
    variance_floor: float,
) -> dict[str, Any]:
    """Eq. 9: λ1 L_AMT + λ2 L_var + λ3 L_cov for one modality, with the parts for logging."""
    parts = {
        "triplet": mined_triplet_loss(z, labels),
        "variance": variance_loss(z, variance_floor),
        "covariance": covariance_loss(z),
    }
    total = (
        lambda_triplet * parts["triplet"]
        + lambda_variance * parts["variance"]
        + lambda_covariance * parts["covariance"]
    )
    return {"total": total, **parts}
