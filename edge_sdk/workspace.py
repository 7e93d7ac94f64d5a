"""CocoER's workspace (spec section 1, step 7): competition and coordination at inference time.

Interface for the scene pipeline
--------------------------------
The two exported graphs of ``scene-cocoer`` give, per person (batch row)::

    levels:    z_c, z_b, z_h (B, d)   hidden outputs of g_θm = the inputs of θ_l^m
               level_logits (B, 3, k) z_m θ_l^mᵀ, before F (optional: compared with the
                                      workspace's own when ``logits_atol`` is set)
    alignment: y_t (B, k)             the pseudo label, after F
               z_t (B, d)             accepted and ignored (no fusion head is trained)

Pass them, as one mapping of numpy arrays, to :meth:`Workspace.update`::

    workspace = Workspace.from_bundle("bundles/scene")  # in-process, backend torch or numpy
    # out of process, same call and result (this process needs no torch):
    #   workspace = ManagedSidecar(SidecarProcess(bundle="bundles/scene")).start()
    #   workspace = SidecarClient("/run/ws.sock")  # a server run by `edge-sdk sidecar`
    result = workspace.update({**levels_outputs, **alignment_outputs})
    result.probabilities          # (B, k) final prediction: mean of the refined levels
    result.level_probabilities    # (B, 3, k) F(z_m θ̃_mᵀ), levels in c, b, h order
    result.initial_probabilities  # (B, 3, k) F(z_m θ_mᵀ), before the workspace
    result.losses                 # (B, 3) f_m = L(F(g_θm(z_m)), y_t)
    result.removed                # (B, 2) level indices in the order competition removed them
    result.kept                   # (B,) the level left in Z
    result.lambdas                # (B, 2, 3) λ of each round (0 for levels no longer in Z)
    result.delta                  # (B, k, d) accumulated δ_l (before η)
    result.removed_names(0), result.kept_name(0), result.label(0)

Every row is independent (its own competition and its own θ̃); the workspace is stateless: the
inference-time update never changes the stored θ_l, so calls do not influence each other and
several threads may share one workspace. Bad input raises :class:`~edge_sdk.errors.InputError`.

What is computed (the spec, made concrete)
------------------------------------------
θ_l^m is the bias-free prediction layer of level m, stored like torch's ``nn.Linear.weight``:
shape (k, d), logits s_m = θ_l^m z_m. Its flattening (row-major over (k, d)) is the d·k axis of
G; any fixed flattening gives the same G Gᵀ and δ.

* Level loss f_m = L(s_m, y_t): soft-target cross-entropy -Σ_j y_tj log softmax(s_m)_j (softmax
  families) or the mean over the k classes of the binary cross-entropy with logits (sigmoid,
  multi-label), i.e. the same L as the training loss
  (:func:`edge_sdk.models.family_scene_cocoer.level_loss`) for one sample.
* Gradients: G_m = ∇_{θ_l^m} f_m, obtained by autograd in the torch backend (the reference,
  no formula assumed) and analytically in the numpy backend: G_m = e_m z_mᵀ with
  e_m = ∂f_m/∂s_m = p_m Σ_j y_tj - y_t (softmax; = p_m - y_t when y_t sums to one) or
  (sigmoid(s_m) - y_t) / k (sigmoid). Then (G Gᵀ)_ij = (e_i·e_j)(z_i·z_j) needs no (k, d) products.
* Competition: Z = all levels. While |Z| > 1: λ = argmin ½ λᵀ G_Z G_Zᵀ λ - λᵀ f_Z on the simplex
  (:func:`solve_simplex_qp`), δ = -G_Zᵀ λ, δ_l += δ, remove n = argmax_{m in Z} f_m (ties: the
  first level in c, b, h order). The spec applies δ_l only in coordination, so f and G are
  those of the original θ_l in every round; a round only drops rows. Hence δ_l = -Gᵀ Σ_r λ_r.
* Coordination: θ̃_l^m = θ_l^m + η δ_l for every level (η from the bundle, default 1.0);
  refined level prediction F(θ̃_l^m z_m). Only θ_l changes and it is the last layer of g, so the
  hidden output ẑ_m of g_θ̃ equals z_m: predictions change only through θ_l. Final prediction:
  the mean of the refined level predictions (the spec's default; no fusion head is trained,
  which is why z_t is unused).

Numerics: everything is float64 (inputs are cast), so the torch and numpy backends agree to
rounding (~1e-12) and the QP is solved far below the 1e-6 the tests demand.

torch is imported only by the torch backend, so a process without torch can use the numpy
backend or talk to the sidecar process (:mod:`edge_sdk.sidecar`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import BackendError, BundleError, InputError

FAMILY = "scene-cocoer"
LEVELS = ("context", "body", "head")
LEVEL_OUTPUTS = ("z_c", "z_b", "z_h")  # graph output name of each level, same order
PSEUDO_LABEL = "y_t"
IGNORED_OUTPUTS = ("z_t",)
LEVEL_LOGITS = "level_logits"
BACKENDS = ("torch", "numpy")
RESULT_ARRAYS = (
    "probabilities",
    "level_probabilities",
    "initial_probabilities",
    "losses",
    "removed",
    "kept",
    "lambdas",
    "delta",
)
WEIGHTS_FORMAT = "edge-sdk-workspace/1"

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
    q_mat = q_mat / scale[:, None, None]
    f_vec = f_vec / scale[:, None]

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
    result = candidates[np.arange(batch), choice]
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


# --------------------------------------------------------------------------------------------
# Level losses, numpy (the analytic form)


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


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceResult:
    """What :meth:`Workspace.update` returns (shapes in the module docstring; float64/int64)."""

    probabilities: np.ndarray
    level_probabilities: np.ndarray
    initial_probabilities: np.ndarray
    losses: np.ndarray
    removed: np.ndarray
    kept: np.ndarray
    lambdas: np.ndarray
    delta: np.ndarray
    levels: tuple[str, ...] = LEVELS
    labels: tuple[str, ...] | None = None

    def removed_names(self, row: int) -> tuple[str, ...]:
        """Names of the levels the competition removed from sample ``row``, in order."""
        return tuple(self.levels[int(i)] for i in self.removed[row])

    def kept_name(self, row: int) -> str:
        """Name of the level left in Z for sample ``row``."""
        return self.levels[int(self.kept[row])]

    def label(self, row: int) -> str | int:
        """The final predicted class of sample ``row`` (its name when labels are known)."""
        index = int(np.argmax(self.probabilities[row]))
        return self.labels[index] if self.labels else index

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (what the sidecar sends back)."""
        return {name: getattr(self, name) for name in RESULT_ARRAYS}

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        levels: Sequence[str] = LEVELS,
        labels: Sequence[str] | None = None,
    ) -> WorkspaceResult:
        """Rebuild a result, checking that every array is present and the shapes agree."""
        missing = [n for n in RESULT_ARRAYS if n not in arrays]
        if missing:
            raise InputError(f"workspace result lacks {missing}")
        a = {n: np.asarray(arrays[n]) for n in RESULT_ARRAYS}
        count = len(levels)
        if a["probabilities"].ndim != 2:
            raise InputError(f"probabilities must be (B, k), got {a['probabilities'].shape}")
        batch, k = a["probabilities"].shape
        expected = {
            "level_probabilities": (batch, count, k),
            "initial_probabilities": (batch, count, k),
            "losses": (batch, count),
            "removed": (batch, count - 1),
            "kept": (batch,),
            "lambdas": (batch, count - 1, count),
        }
        for name, shape in expected.items():
            if a[name].shape != shape:
                raise InputError(f"result array {name} has shape {a[name].shape}, not {shape}")
        if a["delta"].ndim != 3 or a["delta"].shape[:2] != (batch, k):
            raise InputError(f"result array delta has shape {a['delta'].shape}, not (B, k, d)")
        for name in ("removed", "kept"):
            if a[name].size and not (
                np.issubdtype(a[name].dtype, np.integer)
                and a[name].min() >= 0
                and a[name].max() < count
            ):
                raise InputError(f"result array {name} holds no valid level indices")
        return cls(**a, levels=tuple(levels), labels=tuple(labels) if labels else None)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendError(
            "the workspace's torch backend needs torch (pip install 'edge-sdk[torch]'); "
            "use backend='numpy' or the sidecar process instead"
        ) from exc
    return torch


class Workspace:
    """Competition + coordination over the level heads' prediction layers θ_l^m.

    Args:
        theta: level name -> θ_l^m, shape (k, d) (torch's ``Linear.weight`` layout), for
            every name in ``levels``.
        multi_label: F = sigmoid with mean BCE (EMOTIC) instead of softmax with cross-entropy.
        eta: η, the coordination step size.
        labels: class names (k), or None.
        levels: level names in the graph's order (default context, body, head); the input
            keys are ``z_<first letter>``.
        backend: ``"torch"`` (autograd reference) or ``"numpy"`` (analytic form).
        logits_atol: when set and ``level_logits`` is among the inputs, they must equal
            z_m θ_mᵀ within this absolute tolerance: a check that the engine and the workspace
            hold the same θ_l (use a looser value for FP16/INT8 engines). None: not checked.
        ridge: see :func:`solve_simplex_qp`.
    """

    def __init__(
        self,
        theta: Mapping[str, Any],
        *,
        multi_label: bool,
        eta: float = 1.0,
        labels: Sequence[str] | None = None,
        levels: Sequence[str] = LEVELS,
        backend: str = "torch",
        logits_atol: float | None = None,
        ridge: float = DEFAULT_RIDGE,
    ) -> None:
        self.levels = tuple(levels)
        if len(self.levels) < 2 or len(set(self.levels)) != len(self.levels):
            raise InputError(f"the workspace needs at least two distinct levels: {self.levels}")
        self.inputs = tuple(f"z_{name[:1]}" for name in self.levels)
        if len(set(self.inputs)) != len(self.inputs):
            raise InputError(f"level names {self.levels} give clashing inputs {self.inputs}")
        missing = [m for m in self.levels if m not in theta]
        if missing:
            raise InputError(f"theta lacks the levels {missing}")
        stacked = [np.asarray(theta[m], dtype=np.float64) for m in self.levels]
        shapes = {w.shape for w in stacked}
        if len(shapes) != 1 or len(stacked[0].shape) != 2 or 0 in stacked[0].shape:
            raise InputError(f"every θ_l^m must be one (k, d) matrix; got {sorted(shapes)}")
        self.theta = np.ascontiguousarray(np.stack(stacked))  # (L, k, d)
        self.theta.setflags(write=False)
        if not np.isfinite(self.theta).all():
            raise InputError("θ_l contains NaN or Inf")
        self.classes, self.width = self.theta.shape[1:]
        self.multi_label = bool(multi_label)
        self.eta = float(eta)
        if not np.isfinite(self.eta):
            raise InputError(f"eta must be finite, got {eta!r}")
        self.labels = tuple(labels) if labels else None
        if self.labels is not None and len(self.labels) != self.classes:
            raise InputError(f"{len(self.labels)} labels for k = {self.classes} classes")
        if backend not in BACKENDS:
            raise InputError(f"unknown workspace backend {backend!r}; choose from {BACKENDS}")
        self._theta_torch = None
        if backend == "torch":
            self._theta_torch = _import_torch().tensor(self.theta)  # a private, writable copy
        self.backend = backend
        self.logits_atol = logits_atol
        self.ridge = float(ridge)

    # ---------------------------------------------------------------------------------- build
    @classmethod
    def from_bundle(cls, bundle: Any, **options: Any) -> Workspace:
        """The workspace of a ``scene-cocoer`` bundle (a ModelBundle or its directory).

        θ_l^m come from the ``levels`` graph's safetensors (``heads.<level>.predict.weight``),
        hash-checked at read time; η, the activation and the labels from the manifest.
        ``options`` go to the constructor (backend, logits_atol, ridge).
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load

        from edge_sdk.bundle import ModelBundle

        if not isinstance(bundle, ModelBundle):
            bundle = ModelBundle.load(bundle)
        manifest = bundle.manifest
        if manifest.family != FAMILY:
            raise BundleError(f"a workspace needs a {FAMILY} bundle, not {manifest.family}")
        settings = manifest.config.get("workspace", {})
        if list(settings.get("levels", LEVEL_OUTPUTS)) != list(LEVEL_OUTPUTS):
            raise BundleError(
                f"bundle workspace levels {settings.get('levels')} are not {list(LEVEL_OUTPUTS)}"
            )
        activation = manifest.config.get("activation")
        if activation not in ("softmax", "sigmoid"):
            raise BundleError(f"bundle activation {activation!r} is not softmax or sigmoid")
        artifacts = [a for a in manifest.artifacts_for("levels") if a.format == "safetensors"]
        if not artifacts:
            raise BundleError("the bundle has no safetensors weights for the levels graph")
        try:
            state = load(bundle.read_artifact(artifacts[0]))
        except SafetensorError as exc:
            raise BundleError(f"unreadable levels weights: {exc}") from exc
        theta = {}
        for level in LEVELS:
            key = f"heads.{level}.predict.weight"
            if key not in state:
                raise BundleError(f"levels weights lack {key}")
            theta[level] = state[key]
        return cls(
            theta,
            multi_label=activation == "sigmoid",
            eta=float(settings.get("eta", 1.0)),
            labels=manifest.labels,
            **options,
        )

    def config(self) -> dict[str, Any]:
        """JSON-able settings (everything but θ_l)."""
        return {
            "levels": list(self.levels),
            "labels": list(self.labels) if self.labels else None,
            "multi_label": self.multi_label,
            "eta": self.eta,
            "ridge": self.ridge,
            "logits_atol": self.logits_atol,
        }

    def fingerprint(self) -> str:
        """sha256 of θ_l (float64, little-endian) and the settings that change results."""
        digest = hashlib.sha256(self.theta.astype("<f8").tobytes())
        settings = {k: v for k, v in self.config().items() if k != "logits_atol"}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()

    def info(self) -> dict[str, Any]:
        """Settings, sizes, backend and fingerprint (what the sidecar reports)."""
        return {
            **self.config(),
            "classes": int(self.classes),
            "width": int(self.width),
            "backend": self.backend,
            "fingerprint": self.fingerprint(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write θ_l and the settings to one safetensors file (read back by :meth:`load`)."""
        from safetensors.numpy import save_file

        target = Path(path)
        tensors = {
            f"theta.{m}": np.ascontiguousarray(w)
            for m, w in zip(self.levels, self.theta, strict=True)
        }
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(self.config())}
        save_file(tensors, str(target), metadata=metadata)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> Workspace:
        """A workspace written by :meth:`save`; ``options`` override backend, logits_atol."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except (OSError, SafetensorError) as exc:
            raise InputError(f"cannot read workspace weights {path}: {exc}") from exc
        if metadata.get("format") != WEIGHTS_FORMAT:
            raise InputError(f"{path} is not a workspace weights file ({WEIGHTS_FORMAT})")
        try:
            config = json.loads(metadata["config"])
            levels = tuple(config["levels"])
            theta = {m: tensors[f"theta.{m}"] for m in levels}
            settings = {
                "multi_label": bool(config["multi_label"]),
                "eta": float(config["eta"]),
                "labels": config.get("labels"),
                "levels": levels,
                "ridge": float(config.get("ridge", DEFAULT_RIDGE)),
                "logits_atol": config.get("logits_atol"),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed workspace weights file {path}: {exc!r}") from exc
        return cls(theta, **{**settings, **options})

    # --------------------------------------------------------------------------------- update
    def _inputs(self, outputs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Validated z (B, L, d) and y_t (B, k) in float64."""
        if not isinstance(outputs, Mapping):
            raise InputError(f"workspace input must be a mapping of arrays, not {type(outputs)}")
        needed = [*self.inputs, PSEUDO_LABEL]
        missing = [n for n in needed if n not in outputs]
        if missing:
            raise InputError(f"workspace input lacks {missing} (needs {needed})")
        arrays = {}
        for name in needed:
            value = np.asarray(outputs[name])
            if value.dtype.kind not in "fiu":
                raise InputError(f"{name} must be numeric, got dtype {value.dtype}")
            arrays[name] = value.astype(np.float64)
        y_t = arrays[PSEUDO_LABEL]
        if y_t.ndim != 2 or y_t.shape[1] != self.classes or y_t.shape[0] == 0:
            raise InputError(f"y_t must be (B >= 1, k={self.classes}), got {y_t.shape}")
        batch = y_t.shape[0]
        for name in self.inputs:
            if arrays[name].shape != (batch, self.width):
                raise InputError(
                    f"{name} must be (B={batch}, d={self.width}), got {arrays[name].shape}"
                )
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise InputError(f"{name} contains NaN or Inf")
        if y_t.min() < -1e-6 or y_t.max() > 1.0 + 1e-6:
            raise InputError("y_t must hold probabilities in [0, 1] (F applied)")
        z = np.stack([arrays[name] for name in self.inputs], axis=1)
        return z, np.clip(y_t, 0.0, 1.0)

    def _check_logits(self, outputs: Mapping[str, Any], logits: np.ndarray) -> None:
        if self.logits_atol is None or LEVEL_LOGITS not in outputs:
            return
        given = np.asarray(outputs[LEVEL_LOGITS], dtype=np.float64)
        if given.shape != logits.shape:
            raise InputError(f"level_logits must be {logits.shape}, got {given.shape}")
        worst = float(np.abs(given - logits).max())
        if not worst <= self.logits_atol:
            raise InputError(
                f"level_logits differ from z_m θ_mᵀ by {worst:.3g} (> {self.logits_atol:g}): "
                "the engine and the workspace do not hold the same θ_l"
            )

    def update(self, outputs: Mapping[str, Any]) -> WorkspaceResult:
        """Competition + coordination for every row of the exported graphs' outputs.

        Args:
            outputs: ``z_c``, ``z_b``, ``z_h`` (B, d) and ``y_t`` (B, k); optionally
                ``level_logits`` (B, L, k) (checked when ``logits_atol`` is set) and ``z_t``
                (ignored). Other keys are ignored, so the graphs' output dicts can be merged.

        Returns:
            The final and per-level predictions with the competition's details.
        """
        z, y_t = self._inputs(outputs)
        if self.backend == "torch":
            parts = self._update_torch(z, y_t)
        else:
            parts = self._update_numpy(z, y_t)
        logits, losses, lambdas, removed, kept, delta, refined = parts
        self._check_logits(outputs, logits)
        level_probabilities = activate(refined, self.multi_label)
        return WorkspaceResult(
            probabilities=level_probabilities.mean(axis=1),
            level_probabilities=level_probabilities,
            initial_probabilities=activate(logits, self.multi_label),
            losses=losses,
            removed=removed,
            kept=kept,
            lambdas=lambdas,
            delta=delta,
            levels=self.levels,
            labels=self.labels,
        )

    def _update_numpy(self, z: np.ndarray, y_t: np.ndarray) -> tuple[np.ndarray, ...]:
        """The analytic form: G_m = e_m z_mᵀ, (G Gᵀ)_ij = (e_i·e_j)(z_i·z_j)."""
        logits = np.einsum("lkd,bld->blk", self.theta, z)
        losses = level_losses(logits, y_t, self.multi_label)
        e = loss_gradients(logits, y_t, self.multi_label)
        gram = np.einsum("bik,bjk->bij", e, e) * np.einsum("bid,bjd->bij", z, z)
        lambdas, removed, kept = compete(gram, losses, ridge=self.ridge)
        weights = lambdas.sum(axis=1)  # δ_l = -Gᵀ Σ_r λ_r
        delta = -np.einsum("bl,blk,bld->bkd", weights, e, z)
        refined = logits + self.eta * np.einsum("bkd,bld->blk", delta, z)
        return logits, losses, lambdas, removed, kept, delta, refined

    def _update_torch(self, z: np.ndarray, y_t: np.ndarray) -> tuple[np.ndarray, ...]:
        """The reference: G_m = ∇_{θ_l^m} f_m by autograd, θ̃ = θ + η δ_l, logits θ̃ z."""
        torch = _import_torch()
        batch, count, _ = z.shape
        theta = self._theta_torch
        zt, yt = torch.from_numpy(z), torch.from_numpy(y_t)
        # One copy of θ_l^m per sample: f[b, m] depends only on copy [b, m], so the gradient
        # of Σ f w.r.t. the copies is exactly ∇_{θ_l^m} f_m for every sample and level.
        with torch.inference_mode(False), torch.enable_grad():
            copies = theta.expand(batch, count, *theta.shape[1:]).clone().requires_grad_(True)
            logits = torch.matmul(copies, zt.unsqueeze(-1)).squeeze(-1)  # (B, L, k)
            if self.multi_label:
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
        lambdas, removed, kept = compete(gram.numpy(), losses_np, ridge=self.ridge)
        weights = torch.from_numpy(lambdas.sum(axis=1))
        delta = -(weights.unsqueeze(-1) * gradient).sum(dim=1).reshape(batch, *theta.shape[1:])
        tilde = theta.unsqueeze(0) + self.eta * delta.unsqueeze(1)  # θ̃_l^m, (B, L, k, d)
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
