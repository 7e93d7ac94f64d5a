"""Valence/arousal metrics in NumPy (RMSE, PCC, CCC per dimension) for accuracy checks.

These are the figures the CAF paper reports on AffectNet / AFEW-VA. They use population
moments (``ddof=0``) throughout, the same convention as the torch losses in
:mod:`edge_sdk.models.face_caf_losses`, so a training-time loss and an evaluation figure agree.
No torch import: accuracy checks run on devices that only have ONNX Runtime.
"""

from __future__ import annotations

import numpy as np

DIMENSIONS = ("valence", "arousal")


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (n, k) views of predictions and targets; 1-D inputs become one column."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in shape")
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"expected (n, k) arrays with n >= 1, got {p.shape}")
    return p, t


def rmse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Root-mean-square error per column: sqrt(mean((p - t)^2))."""
    p, t = _pair(pred, target)
    return np.sqrt(np.mean((p - t) ** 2, axis=0))


def pcc(pred: np.ndarray, target: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Pearson correlation per column; 0 where either side is constant (eps guard)."""
    p, t = _pair(pred, target)
    pc, tc = p - p.mean(axis=0), t - t.mean(axis=0)
    cov = np.mean(pc * tc, axis=0)
    return cov / np.sqrt(np.mean(pc**2, axis=0) * np.mean(tc**2, axis=0) + eps)


def ccc(pred: np.ndarray, target: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Lin's concordance correlation per column: 2 cov / (var_p + var_t + (mean_p - mean_t)^2)."""
    p, t = _pair(pred, target)
    mp, mt = p.mean(axis=0), t.mean(axis=0)
    cov = np.mean((p - mp) * (t - mt), axis=0)
    return 2.0 * cov / (p.var(axis=0) + t.var(axis=0) + (mp - mt) ** 2 + eps)


def va_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"rmse_valence": .., "pcc_valence": .., "ccc_valence": .., ..._arousal}`` for (n, 2)."""
    p, t = _pair(pred, target)
    if p.shape[1] != len(DIMENSIONS):
        raise ValueError(f"expected (n, 2) valence/arousal arrays, got {p.shape}")
    out: dict[str, float] = {}
    for name, values in (("rmse", rmse(p, t)), ("pcc", pcc(p, t)), ("ccc", ccc(p, t))):
        for dim, value in zip(DIMENSIONS, values, strict=True):
            out[f"{name}_{dim}"] = float(value)
    return out
