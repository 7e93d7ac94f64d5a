"""The level losses f_m, their gradients e_m and the activation F, in numpy (analytic form).

Why: the numpy backend needs no torch; it uses G_m = e_m z_mᵀ with e_m = ∂f_m/∂s_m, which the
tests check against torch's autograd. L is the training loss for one sample: soft-target
cross-entropy (softmax families) or the mean binary cross-entropy with logits (multi-label).
"""

from __future__ import annotations

import numpy as np


def _log_softmax(s: np.ndarray) -> np.ndarray:
    shifted = s - s.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -s))


def activate(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """F: sigmoid (multi-label) or softmax over the last axis, in numpy."""
    return _sigmoid(logits) if multi_label else np.exp(_log_softmax(logits))


def level_losses(logits: np.ndarray, y_t: np.ndarray, multi_label: bool) -> np.ndarray:
    """f_m per sample and level: logits (B, L, k), y_t (B, k) -> (B, L)."""
    y = y_t[:, None, :]
    if multi_label:
        return (np.logaddexp(0.0, logits) - y * logits).mean(axis=-1)
    return -(y * _log_softmax(logits)).sum(axis=-1)


def loss_gradients(logits: np.ndarray, y_t: np.ndarray, multi_label: bool) -> np.ndarray:
    """e_m = ∂f_m/∂s_m (B, L, k); the gradient w.r.t. θ_l^m is e_m z_mᵀ."""
    y = y_t[:, None, :]
    if multi_label:
        return (_sigmoid(logits) - y) / logits.shape[-1]
    return activate(logits, False) * y.sum(axis=-1, keepdims=True) - y
