"""CAF training maths (Kim & Song, AAAI 2021): Otsu binarisation, critic, adversarial, AV losses.

What is implemented, and why (the review does not print the paper's Eq. 6; the concrete forms
below follow the published paper and the authors' public training script, read for facts
only; deviations are marked):

* Emotional binarisation: intensity r = sqrt(v^2 + a^2); Otsu's threshold delta_r maximises
  the between-class variance w0 w1 (mu0 - mu1)^2 over a histogram of r; r >= delta_r is the
  strong set P, the rest the weak set Q (:func:`otsu_threshold`, :func:`strong_mask`).
* Critic loss (:func:`critic_loss`): the critic f_c maps latent features to an embedding.
  Strong anchors P_i are paired with a strong positive P_{m-1-i} and a weak negative
  Q_{m-1-i} (m = min(|P|, |Q|), the authors' reversed pairing). Contrastive distances
      d_ap = ||f_c(P_i) - f_c(P_{m-1-i})||^2,   d_an = [alpha_i - ||f_c(P_i) - f_c(Q_{m-1-i})||^2]_+
  enter a Fisher-IPM augmented Lagrangian (Mroueh & Sercu's Fisher GAN, the paper's VDM term):
      L_c = E d_ap + E d_an + lambda (1 - Omega) + rho/2 (1 - Omega)^2,
      Omega = 1/2 (E d_ap^2 + E d_an^2)
  with the multiplier lambda updated by gradient *ascent* (dual step) while the critic
  descends. Deviation: the authors' script subtracts the rho penalty, which rewards violating
  the constraint when minimising; we add it, as an augmented Lagrangian requires.
* Adaptive margin alpha_i = MI_i + Delta_i, both treated as constants of the step (detached;
  the authors let gradients flow through MI, but a margin the critic can move is no margin):
  MI_i is the mutual information of a binary-input Gaussian channel between the strong and
  weak embeddings of the pair, mean over embedding dims of
      log N(y; x, s^2) - log(1/2 N(y; -1, s^2) + 1/2 N(y; +1, s^2)),  s^2 = 0.2,
  clamped to [0, 2.5] (as in the authors' script): it grows when weak embeddings still carry
  the strong ones' information (groups dependent) and shrinks as they separate. Delta_i is the
  confidence interval of the adaptive k-NN rule (Balsubramani et al., NeurIPS 2019) that the
  paper cites: Delta_i = A / sqrt(k_i), k_i the smallest neighbourhood (of the critic
  embeddings, labels strong/weak) whose label bias exceeds A / sqrt(k), A = 0.7; well
  separated groups give small k_i and a wide margin, mixed groups a narrow one.
  (The script indexes A / sqrt(k_i - 1) with a wrap-around at k_i = 1; we use A / sqrt(k_i).)
* Adversarial loss (:func:`fisher_ipm_squared`): with the critic frozen, the encoder minimises
  the squared Fisher IPM between critic embeddings of Q and (detached) P over linear witnesses
  f(e) = w.e, which has the closed form  (mu_P - mu_Q)^T M^{-1} (mu_P - mu_Q),
  M = 1/2 (E_P e e^T + E_Q e e^T) (+ ridge). Deviation: the authors' script uses
  -0.1 E_Q[mean f_c] (a Fisher-GAN generator loss with the mean embedding coordinate as score);
  our critic is trained contrastively, so its coordinates carry no "strong" orientation; the
  optimal linear witness supplies it, and the value is bounded (in [0, 4]) and scale-free.
* L_AV = mean over valence and arousal of RMSE + (1 - PCC) + (1 - CCC) (:func:`av_loss`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

TIE_RTOL = 1e-9  # between-class variances this close to the maximum count as ties


def otsu_threshold(values: np.ndarray | Tensor, bins: int = 256) -> float:
    """Otsu's threshold: the histogram bin edge that maximises w0 w1 (mu0 - mu1)^2.

    The histogram spans [min, max] of ``values`` in ``bins`` equal bins; class 0 holds the
    bins below a candidate edge, class 1 the rest, each bin represented by its centre. Ties
    (plateaus across empty bins) resolve to the smallest edge. Constant input returns that
    value (everything is then "strong": r >= delta_r).
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError("otsu_threshold needs a non-empty array of finite values")
    if bins < 2:
        raise ValueError(f"otsu_threshold needs at least 2 bins, got {bins}")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight = counts / counts.sum()
    w0 = np.cumsum(weight)[:-1]  # candidate edge t = 1 .. bins-1: class 0 = bins [0, t)
    w1 = np.cumsum(weight[::-1])[::-1][1:]
    first = np.cumsum(weight * centres)
    m0, m1 = first[:-1], first[-1] - first[:-1]
    valid = (counts.cumsum()[:-1] > 0) & (counts.cumsum()[:-1] < counts.sum())
    sigma = np.zeros_like(w0)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=valid)
    mu1 = np.divide(m1, w1, out=np.zeros_like(m1), where=valid)
    sigma[valid] = (w0 * w1 * (mu0 - mu1) ** 2)[valid]
    best = int(np.flatnonzero(sigma >= sigma.max() * (1.0 - TIE_RTOL))[0])
    return float(edges[best + 1])


def intensity(valence_arousal: Tensor) -> Tensor:
    """Emotion intensity r = sqrt(v^2 + a^2) per row of a (batch, 2) tensor."""
    return torch.linalg.vector_norm(valence_arousal, dim=-1)


def strong_mask(valence_arousal: Tensor, threshold: float | None = None, bins: int = 256) -> Tensor:
    """Boolean (batch,) mask of the strong set P (r >= delta_r).

    Args:
        valence_arousal: (batch, 2) targets.
        threshold: a dataset-level delta_r (the paper's setting: Otsu over the whole training
            set, e.g. ``otsu_threshold(intensity(all_targets))``); None computes Otsu on
            this batch, a stand-in when no dataset statistic is at hand.
        bins: histogram bins for the per-batch Otsu.
    """
    r = intensity(valence_arousal.detach())
    delta = otsu_threshold(r, bins) if threshold is None else float(threshold)
    return r >= delta


# --- valence/arousal regression losses --------------------------------------------------------


def rmse(pred: Tensor, target: Tensor, eps: float = 0.0) -> Tensor:
    """Root-mean-square error per column of (n, k) tensors; ``eps`` keeps sqrt' finite at 0."""
    return torch.sqrt(torch.mean((pred - target) ** 2, dim=0) + eps)


def pcc(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation per column (population moments); eps guards constant columns."""
    pc, tc = pred - pred.mean(dim=0), target - target.mean(dim=0)
    cov = torch.mean(pc * tc, dim=0)
    return cov / torch.sqrt(torch.mean(pc**2, dim=0) * torch.mean(tc**2, dim=0) + eps)


def ccc(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Concordance correlation per column: 2 cov / (var_p + var_t + (mean_p - mean_t)^2)."""
    mp, mt = pred.mean(dim=0), target.mean(dim=0)
    cov = torch.mean((pred - mp) * (target - mt), dim=0)
    var_p = torch.mean((pred - mp) ** 2, dim=0)
    var_t = torch.mean((target - mt) ** 2, dim=0)
    return 2.0 * cov / (var_p + var_t + (mp - mt) ** 2 + eps)


def av_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L_AV = mean over valence, arousal of RMSE + (1 - PCC) + (1 - CCC): the paper's equal weights.

    The authors' script weighs differently: (RMSE_v + RMSE_a) + 0.5 (1 - mean PCC) +
    0.5 (1 - mean CCC), i.e. 1 : 0.25 : 0.25 per dimension with unbiased stds. We follow the
    paper, so here RMSE weighs half and the correlation terms twice what they do there.
    """
    per_dim = rmse(pred, target, eps=1e-12) + (1.0 - pcc(pred, target)) + (1.0 - ccc(pred, target))
    return per_dim.mean()


# --- critic: adaptive margin and Fisher-IPM contrastive loss ---------------------------------


def gaussian_channel_mi(x: Tensor, y: Tensor, variance: float = 0.2) -> Tensor:
    """Per-row MI estimate of a binary-input (+-1) Gaussian channel sending x, receiving y.

    mean over the last dim of log p(y | x) - log(1/2 p(y | -1) + 1/2 p(y | +1)), with
    p(y | m) = N(y; m, variance); Gaussian constants cancel, logsumexp keeps it stable.
    """
    log_xy = -((y - x) ** 2) / (2.0 * variance)
    log_pm = torch.stack([-((y + 1.0) ** 2), -((y - 1.0) ** 2)]) / (2.0 * variance)
    log_marginal = torch.logsumexp(log_pm, dim=0) - math.log(2.0)
    return (log_xy - log_marginal).mean(dim=-1)


def aknn_confidence(
    points: Tensor, is_strong: Tensor, confidence: float = 0.7, max_k: int = 10
) -> Tensor:
    """Delta_i = A / sqrt(k_i), k_i the adaptive-k-NN neighbourhood size of each point.

    For k = 1 .. K (K = min(max_k, n - 1)) the k nearest other points (Euclidean) vote with
    their labels; k_i is the first k where the majority fraction minus 1/2 exceeds A/sqrt(k),
    else K. Computed without gradient: it sets a margin, it is not optimised.
    """
    with torch.no_grad():
        n = points.shape[0]
        k_max = min(max_k, n - 1)
        if k_max < 1:
            return torch.full((n,), confidence, dtype=points.dtype, device=points.device)
        dist = torch.cdist(points, points)
        dist.fill_diagonal_(float("inf"))
        order = torch.sort(dist, dim=1, stable=True).indices[:, :k_max]
        votes = is_strong.to(points.dtype)[order]
        ks = torch.arange(1, k_max + 1, dtype=points.dtype, device=points.device)
        frac = votes.cumsum(dim=1) / ks
        bias = torch.maximum(frac, 1.0 - frac) - 0.5
        admissible = bias > confidence / torch.sqrt(ks)
        first = admissible.to(torch.int64).argmax(dim=1) + 1
        chosen = torch.where(admissible.any(dim=1), first, torch.full_like(first, k_max))
        return confidence / torch.sqrt(chosen.to(points.dtype))


def adaptive_margin(
    anchors: Tensor,
    negatives: Tensor,
    all_points: Tensor,
    is_strong: Tensor,
    *,
    mi_variance: float = 0.2,
    mi_max: float = 2.5,
    confidence: float = 0.7,
    max_k: int = 10,
) -> Tensor:
    """alpha_i = clamp(MI(anchor_i, negative_i), 0, mi_max) + Delta_i (anchors first in points)."""
    with torch.no_grad():
        mi = gaussian_channel_mi(anchors, negatives, mi_variance).clamp(0.0, mi_max)
        delta = aknn_confidence(all_points, is_strong, confidence, max_k)[: anchors.shape[0]]
        return mi + delta


def critic_loss(
    strong: Tensor,
    weak: Tensor,
    fisher_lambda: Tensor,
    *,
    rho: float = 1e-6,
    mi_variance: float = 0.2,
    mi_max: float = 2.5,
    confidence: float = 0.7,
    max_k: int = 10,
) -> Tensor:
    """Contrastive Fisher-IPM critic loss L_c on critic embeddings of P (strong) and Q (weak).

    ``fisher_lambda`` enters with its gradient reversed (value lambda, d/d lambda = -(1 - Omega)),
    so the optimiser that descends on the critic ascends on the multiplier: the augmented
    Lagrangian's dual step inside one scalar loss.
    """
    m = min(strong.shape[0], weak.shape[0])
    if m == 0:
        raise ValueError("critic_loss needs at least one strong and one weak sample")
    anchors, weak = strong[:m], weak[:m]
    positives, negatives = anchors.flip(0), weak.flip(0)
    labels = torch.cat([torch.ones(m, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)])
    alpha = adaptive_margin(
        anchors,
        negatives,
        torch.cat([anchors, weak]),
        labels.to(strong.device),
        mi_variance=mi_variance,
        mi_max=mi_max,
        confidence=confidence,
        max_k=max_k,
    )
    d_ap = ((anchors - positives) ** 2).sum(dim=1)
    d_an = torch.relu(alpha - ((anchors - negatives) ** 2).sum(dim=1))
    omega = 0.5 * (d_ap.pow(2).mean() + d_an.pow(2).mean())
    constraint = 1.0 - omega
    reversed_lambda = 2.0 * fisher_lambda.detach() - fisher_lambda
    return d_ap.mean() + d_an.mean() + reversed_lambda * constraint + 0.5 * rho * constraint**2


def fisher_ipm_squared(weak: Tensor, strong: Tensor, ridge: float = 1e-3) -> Tensor:
    """Squared Fisher IPM over linear witnesses between embeddings of Q and P.

    sup_w (E_P w.e - E_Q w.e)^2 / (1/2 E_P (w.e)^2 + 1/2 E_Q (w.e)^2) = d^T M^{-1} d with
    d = mu_P - mu_Q, M = 1/2 (E_P e e^T + E_Q e e^T) + ridge * mean(diag M) * I (ridge keeps
    the few-sample M invertible without depending on the embedding's scale).
    """
    diff = strong.mean(dim=0) - weak.mean(dim=0)
    second = 0.5 * (strong.T @ strong / strong.shape[0] + weak.T @ weak / weak.shape[0])
    eye = torch.eye(second.shape[0], dtype=second.dtype, device=second.device)
    scale = torch.diagonal(second).mean().detach() * ridge + 1e-12
    witness = torch.linalg.solve(second + scale * eye, diff)
    return diff @ witness
