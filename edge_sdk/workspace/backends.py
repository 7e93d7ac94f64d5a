"""The two ways to compute one workspace update: torch autograd (reference) and numpy (analytic).

Why two: the torch backend obtains G_m = ∇_{θ_l^m} f_m by autograd, so no gradient formula is
assumed (the reference, and what the sidecar runs); the numpy backend uses the analytic
G_m = e_m z_mᵀ, so a process without torch still gets the workspace. Both return the same
tuple in float64 and agree to rounding (~1e-12). torch is imported only when the torch backend
is used, never at module import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import BackendError
from edge_sdk.workspace.losses import level_losses, loss_gradients
from edge_sdk.workspace.qp import compete


def import_torch() -> Any:
    """torch, or a BackendError that names the torch-free alternatives."""
    try:
        import torch
    except ImportError as exc:
        raise BackendError(
            "the workspace's torch backend needs torch (pip install 'edge-sdk[torch]'); "
            "use backend='numpy' or the sidecar process instead"
        ) from exc
    return torch


def update_numpy(
    theta: np.ndarray,
    z: np.ndarray,
    y_t: np.ndarray,
    *,
    multi_label: bool,
    eta: float,
    ridge: float,
) -> tuple[np.ndarray, ...]:
    """The analytic form: G_m = e_m z_mᵀ, (G Gᵀ)_ij = (e_i·e_j)(z_i·z_j).

    Args:
        theta: θ_l, (L, k, d) float64.
        z: (B, L, d) and y_t: (B, k), validated float64.

    Returns:
        (logits, losses, lambdas, removed, kept, delta, refined logits).
    """
    logits = np.einsum("lkd,bld->blk", theta, z)
    losses = level_losses(logits, y_t, multi_label)
    e = loss_gradients(logits, y_t, multi_label)
    gram = np.einsum("bik,bjk->bij", e, e) * np.einsum("bid,bjd->bij", z, z)
    lambdas, removed, kept = compete(gram, losses, ridge=ridge)
    weights = lambdas.sum(axis=1)  # δ_l = -Gᵀ Σ_r λ_r
    delta = -np.einsum("bl,blk,bld->bkd", weights, e, z)
    refined = logits + eta * np.einsum("bkd,bld->blk", delta, z)
    return logits, losses, lambdas, removed, kept, delta, refined


def update_torch(
    theta: Any,
    z: np.ndarray,
    y_t: np.ndarray,
    *,
    multi_label: bool,
    eta: float,
    ridge: float,
) -> tuple[np.ndarray, ...]:
    """The reference: G_m = ∇_{θ_l^m} f_m by autograd, θ̃ = θ + η δ_l, logits θ̃ z.

    Args:
        theta: θ_l as a float64 torch tensor (L, k, d).
        z: (B, L, d) and y_t: (B, k), validated float64.

    Returns:
        The same tuple as :func:`update_numpy`, as numpy arrays.
    """
    torch = import_torch()
    batch, count, _ = z.shape
    zt, yt = torch.from_numpy(z), torch.from_numpy(y_t)
    # One copy of θ_l^m per sample: f[b, m] depends only on copy [b, m], so the gradient
    # of Σ f w.r.t. the copies is exactly ∇_{θ_l^m} f_m for every sample and level.
    with torch.inference_mode(False), torch.enable_grad():
        copies = theta.expand(batch, count, *theta.shape[1:]).clone().requires_grad_(True)
        logits = torch.matmul(copies, zt.unsqueeze(-1)).squeeze(-1)  # (B, L, k)
        if multi_label:
            per_class = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, yt.unsqueeze(1).expand_as(logits), reduction="none"
            )
            losses = per_class.mean(dim=-1)
        else:
            losses = -(yt.unsqueeze(1) * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
        (grads,) = torch.autograd.grad(losses.sum(), copies)
    gradient = grads.reshape(batch, count, -1)  # G rows, (B, L, d*k)
    gram = torch.bmm(gradient, gradient.transpose(1, 2))
    losses_np = losses.detach().numpy()
    lambdas, removed, kept = compete(gram.numpy(), losses_np, ridge=ridge)
    weights = torch.from_numpy(lambdas.sum(axis=1))
    delta = -(weights.unsqueeze(-1) * gradient).sum(dim=1).reshape(batch, *theta.shape[1:])
    tilde = theta.unsqueeze(0) + eta * delta.unsqueeze(1)  # θ̃_l^m, (B, L, k, d)
    refined = torch.matmul(tilde, zt.unsqueeze(-1)).squeeze(-1)
    return (
        logits.detach().numpy(),
        losses_np,
        lambdas,
        removed,
        kept,
        delta.numpy(),
        refined.numpy(),
    )
