"""The workspace's competition: an exact simplex QP per round, and the rounds themselves.

Why a module of its own: the QP is the one numerically delicate part of the workspace (support
enumeration, singular supports, ties) and both backends share it, so it is tested on its own
against an independent solver. Competition: Z = all levels; while |Z| > 1,
λ = argmin ½ λᵀ G_Z G_Zᵀ λ - λᵀ f_Z on the simplex, then the level with the largest loss leaves
Z (ties: the first level in c, b, h order). f and G stay those of the original θ_l in every
round, so a round only drops rows and δ_l = -Gᵀ Σ_r λ_r.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from edge_sdk.errors import InputError

# QP numerics, on the problem scaled so that max_i Q_ii = 1 (the minimiser does not change).
DEFAULT_RIDGE = 1e-10  # added to Q_SS of a support whose KKT matrix is singular
_SINGULAR = 1e-13  # |det| of the scaled bordered KKT matrix below which a support is singular
_FEASIBLE = 1e-12  # λ_i >= -this counts as feasible (then clipped to 0)
_TIE = 1e-13  # candidates this close (relative) to the best objective tie -> least ‖λ‖


@lru_cache(maxsize=16)
def _supports(q: int) -> tuple[tuple[int, ...], ...]:
    """All non-empty subsets of range(q), smallest first."""
    return tuple(s for size in range(1, q + 1) for s in itertools.combinations(range(q), size))


def _support_kkt(q_mat: np.ndarray, f_vec: np.ndarray, idx: np.ndarray, ridge: float) -> np.ndarray:
    """λ_S of the KKT system on support ``idx`` (scaled problem), batched; see below.

    Sizes 1 and 2 in closed form (the same numbers as the general solve, without its cost):
    a vertex has λ = 1; a pair has c λ_i = f_i - f_j + Q_jj - Q_ij with
    c = Q_ii + Q_jj - 2 Q_ij = ‖g_i - g_j‖² (= -det of the bordered matrix; ridge: c + 2 ridge).
    """
    batch, size = f_vec.shape[0], len(idx)
    if size == 1:
        return np.ones((batch, 1))
    if size == 2:
        i, j = idx
        c = q_mat[:, i, i] + q_mat[:, j, j] - 2.0 * q_mat[:, i, j]
        extra = np.where(np.abs(c) > _SINGULAR, 0.0, ridge)  # Q_SS + ridge·I if singular
        first = (f_vec[:, i] - f_vec[:, j] + q_mat[:, j, j] + extra - q_mat[:, i, j]) / (
            c + 2.0 * extra
        )
        return np.stack([first, 1.0 - first], axis=1)
    kkt = np.zeros((batch, size + 1, size + 1))
    kkt[:, :size, :size] = q_mat[:, idx[:, None], idx[None, :]]
    kkt[:, :size, size] = 1.0
    kkt[:, size, :size] = 1.0
    rhs = np.concatenate([f_vec[:, idx], np.ones((batch, 1))], axis=1)
    singular = ~(np.abs(np.linalg.det(kkt)) > _SINGULAR)
    if singular.any():
        kkt[singular, :size, :size] += ridge * np.eye(size)
    return np.linalg.solve(kkt, rhs[..., None])[:, :size, 0]


def _scaled_problem(
    gram: np.ndarray, f: np.ndarray, active: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Checked, batched and scaled (max_i Q_ii = 1 over the active set) Q, f and active mask.

    Returns:
        (Q (B, q, q), f (B, q), mask (B, q), whether the input was a single problem).
    """
    q_mat = np.asarray(gram, dtype=np.float64)
    f_vec = np.asarray(f, dtype=np.float64)
    single = f_vec.ndim == 1
    if single:
        q_mat, f_vec = q_mat[None], f_vec[None]
    if f_vec.ndim != 2 or q_mat.shape != (*f_vec.shape, f_vec.shape[1]):
        raise InputError(f"QP shapes do not fit: Q {q_mat.shape}, f {f_vec.shape}")
    batch, q = f_vec.shape
    if q == 0:
        raise InputError("QP needs at least one variable")
    if not (np.isfinite(q_mat).all() and np.isfinite(f_vec).all()):
        raise InputError("QP data must be finite")
    if active is None:
        mask = np.ones((batch, q), dtype=bool)
    else:
        mask = np.broadcast_to(np.asarray(active, dtype=bool), (batch, q))
    if not mask.any(axis=1).all():
        raise InputError("every QP needs at least one active variable")
    diag = np.where(mask, np.diagonal(q_mat, axis1=1, axis2=2), 0.0)
    scale = diag.max(axis=1)
    scale = np.where(scale > 0.0, scale, 1.0)
    return q_mat / scale[:, None, None], f_vec / scale[:, None], mask, single


def _best_candidate(
    q_mat: np.ndarray, f_vec: np.ndarray, mask: np.ndarray, ridge: float
) -> np.ndarray:
    """The feasible KKT point of least objective over every support (ties: least ‖λ‖)."""
    batch, q = f_vec.shape
    supports = _supports(q)
    objectives = np.full((batch, len(supports)), np.inf)
    norms = np.full((batch, len(supports)), np.inf)
    candidates = np.zeros((batch, len(supports), q))
    for index, support in enumerate(supports):
        valid = mask[:, support].all(axis=1)
        if not valid.any():
            continue
        idx = np.asarray(support)
        lam_s = _support_kkt(q_mat, f_vec, idx, ridge)
        ok = valid & np.isfinite(lam_s).all(axis=1) & (lam_s >= -_FEASIBLE).all(axis=1)
        lam_s = np.where(ok[:, None], np.clip(lam_s, 0.0, None), 1.0)
        lam_s = lam_s / lam_s.sum(axis=1, keepdims=True)
        lam = np.zeros((batch, q))
        lam[:, idx] = lam_s
        value = 0.5 * np.einsum("bi,bij,bj->b", lam, q_mat, lam) - (lam * f_vec).sum(axis=1)
        objectives[:, index] = np.where(ok, value, np.inf)
        norms[:, index] = np.where(ok, (lam * lam).sum(axis=1), np.inf)
        candidates[:, index] = lam
    best = objectives.min(axis=1, keepdims=True)
    near = objectives <= best + _TIE * (1.0 + np.abs(best))
    choice = np.where(near, norms, np.inf).argmin(axis=1)
    return candidates[np.arange(batch), choice]


def solve_simplex_qp(
    gram: np.ndarray,
    f: np.ndarray,
    active: np.ndarray | None = None,
    *,
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Exact minimiser of ½ λᵀ Q λ - λᵀ f over the simplex {λ >= 0, Σ λ = 1}, for small q.

    Support enumeration: for every support S (within ``active``), solve the KKT system of the
    equality-constrained problem on S, [[Q_SS, 1], [1ᵀ, 0]] [λ_S; nu] = [f_S; 1]; keep the
    solutions with λ_S >= 0 and return the one with the least objective (exact objective, the
    original Q). Why this is exact: every candidate is feasible, so none beats the optimum, and
    an optimum with the fewest non-zeros always has a non-singular KKT system (were it
    singular, some d with Q d = 0, Σ d = 0 would keep the objective constant along λ + t d up to
    a face with fewer non-zeros), so it is among the candidates. A singular system (identical
    or affinely dependent gradients) is solved with Q_SS + ridge·I: it then yields the
    least-norm point of a flat optimal face (e.g. λ = (½, ½) for identical gradients and equal
    losses) or an infeasible point that is dropped. Among candidates whose objective ties with
    the best (relative 1e-13) the least ‖λ‖ wins, so ties break symmetrically and
    deterministically. The optimal Gᵀλ (hence δ) is unique even where λ is not.

    The problem is first divided by max_i Q_ii (same minimiser) so the thresholds are relative.

    Args:
        gram: Q = G Gᵀ, (q, q) or batched (B, q, q); positive semi-definite.
        f: (q,) or (B, q).
        active: bool (q,) or (B, q); λ is 0 outside it (every row needs one True). None = all.
        ridge: the ridge for singular supports, relative to max_i Q_ii.

    Returns:
        λ with the shape of ``f`` (float64), exactly on the simplex.
    """
    q_mat, f_vec, mask, single = _scaled_problem(gram, f, active)
    result = _best_candidate(q_mat, f_vec, mask, ridge)
    return result[0] if single else result


def qp_objective(gram: np.ndarray, f: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """½ λᵀ Q λ - λᵀ f (batched like :func:`solve_simplex_qp`)."""
    return 0.5 * np.einsum("...i,...ij,...j->...", lam, gram, lam) - (lam * f).sum(axis=-1)


def compete(
    gram: np.ndarray, losses: np.ndarray, *, ridge: float = DEFAULT_RIDGE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The competition's rounds on fixed G Gᵀ (B, L, L) and losses f (B, L).

    Returns:
        (lambdas (B, L-1, L) with 0 for removed levels, removed (B, L-1) level indices in
        removal order, kept (B,) the last level in Z). δ_l = -Gᵀ lambdas.sum(axis=1).
    """
    batch, count = losses.shape
    active = np.ones((batch, count), dtype=bool)
    rows = np.arange(batch)
    lambdas = np.zeros((batch, count - 1, count))
    removed = np.zeros((batch, count - 1), dtype=np.int64)
    for r in range(count - 1):
        lambdas[:, r] = solve_simplex_qp(gram, losses, active, ridge=ridge)
        worst = np.where(active, losses, -np.inf).argmax(axis=1)  # first of equal maxima
        removed[:, r] = worst
        active[rows, worst] = False
    return lambdas, removed, active.argmax(axis=1).astype(np.int64)
