"""The accuracy gate: INT8 against FP32 on held-out samples, per output.

Each output is compared in the terms its consumers care about, which the family policy
declares as the output's *kind* (never guessed from a name):

- ``logits`` / ``probabilities``: class decisions over the last axis (softmax first for
  logits): top-1 agreement and the largest probability difference.
- ``multilabel_logits``: sigmoid per class, decisions at 0.5: agreement of every decision.
- ``binary``: a score in [0, 1] decided at 0.5 (a detector's face probability).
- ``regression``: continuous values such as valence/arousal or box offsets: the CCC delta,
  ``1 - CCC(fp32, int8)`` per column (worst column), i.e. how far INT8 moves away from
  reproducing FP32; with no ground truth on calibration data this is the measurable form.
- ``embedding``: features consumed by later stages: mean and worst cosine similarity.

Every kind also reports max abs difference and NaN/Inf counts; a non-finite INT8 output
fails the gate whatever the other figures say.

Decisions that FP32 itself barely makes (top-2 probability margin, or ``|2p - 1|`` for a
score, below the policy's ``tie_margin``) are *undecided*: a flip between two near-equal
classes says nothing about INT8, so they are left out of the agreement and reported as the
``undecided`` fraction. ``max_prob_diff`` still covers every sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edge_sdk.errors import EdgeSDKError

KINDS = ("logits", "probabilities", "multilabel_logits", "binary", "regression", "embedding")


@dataclass(frozen=True)
class GateThresholds:
    """Pass criteria. ``max_prob_diff`` is a worst case over every sample and class, so it
    is looser than the agreement figure it accompanies."""

    min_agreement: float = 0.99
    max_prob_diff: float = 0.25
    max_ccc_delta: float = 0.02
    min_cosine: float = 0.98

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class OutputFigures:
    """What the gate measured on one output of one graph, and whether it passed."""

    output: str
    kind: str
    samples: int
    max_abs_diff: float
    non_finite: int
    agreement: float | None = None
    undecided: float | None = None
    max_prob_diff: float | None = None
    ccc_delta: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    failures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["failures"] = list(self.failures)
        data["passed"] = self.passed
        return data


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def concordance(a: np.ndarray, b: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two 1-D series (1 when identical)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mean_a, mean_b = a.mean(), b.mean()
    cov = ((a - mean_a) * (b - mean_b)).mean()
    denom = a.var() + b.var() + (mean_a - mean_b) ** 2
    return 1.0 if denom == 0 else float(2 * cov / denom)


def as_rows(values: np.ndarray, kind: str = "logits") -> np.ndarray:
    """Outputs as (N, C) rows so runs of different sizes concatenate.

    Class and embedding outputs keep their last axis (every leading axis is a sample:
    utterances, levels); scores are compared element by element, so they flatten to one
    column; a 2-D regression output keeps its columns (valence, arousal), larger maps
    (box offsets per cell) flatten.
    """
    elementwise = kind in ("binary", "multilabel_logits") or (
        kind == "regression" and values.ndim != 2
    )
    if elementwise or values.ndim < 2:
        return values.reshape(-1, 1)
    return values.reshape(-1, values.shape[-1])


# The figure functions below take (N, C) rows as made by as_rows.


def _agreement(same: np.ndarray, margin: np.ndarray, tie_margin: float) -> dict[str, float]:
    """Agreement over the decided rows (FP32 margin >= tie_margin) and the undecided share."""
    decided = margin >= tie_margin
    agreement = float(np.mean(same[decided])) if decided.any() else 1.0
    return {"agreement": agreement, "undecided": float(1.0 - np.mean(decided))}


def _class_figures(
    ref: np.ndarray, new: np.ndarray, kind: str, tie_margin: float
) -> dict[str, float]:
    if kind == "logits":
        ref_p, new_p = _softmax(ref), _softmax(new)
    else:
        ref_p, new_p = ref, new
    top = np.sort(ref_p, axis=-1)
    margin = top[:, -1] - top[:, -2] if top.shape[-1] > 1 else np.ones(top.shape[0])
    figures = _agreement(ref_p.argmax(-1) == new_p.argmax(-1), margin, tie_margin)
    return {**figures, "max_prob_diff": float(np.abs(ref_p - new_p).max())}


def _decision_figures(
    ref: np.ndarray, new: np.ndarray, kind: str, tie_margin: float
) -> dict[str, float]:
    if kind == "multilabel_logits":
        ref, new = _sigmoid(ref), _sigmoid(new)
    ref, new = ref.reshape(-1), new.reshape(-1)
    figures = _agreement((ref >= 0.5) == (new >= 0.5), np.abs(2 * ref - 1), tie_margin)
    return {**figures, "max_prob_diff": float(np.abs(ref - new).max())}


def _regression_figures(ref: np.ndarray, new: np.ndarray) -> dict[str, float]:
    ref_rows, new_rows = ref, new
    if ref_rows.shape[0] < 2:
        return {}  # concordance needs a spread of values
    worst = max(1.0 - concordance(ref_rows[:, c], new_rows[:, c]) for c in range(ref_rows.shape[1]))
    return {"ccc_delta": float(worst)}


def _embedding_figures(ref: np.ndarray, new: np.ndarray) -> dict[str, float]:
    ref_rows, new_rows = ref.astype(np.float64), new.astype(np.float64)
    norms = np.linalg.norm(ref_rows, axis=1) * np.linalg.norm(new_rows, axis=1)
    both_zero = norms == 0
    cosine = np.where(both_zero, 1.0, (ref_rows * new_rows).sum(1) / np.where(both_zero, 1, norms))
    return {"mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min())}


def kind_figures(
    ref: np.ndarray, new: np.ndarray, kind: str, tie_margin: float = 0.0
) -> dict[str, float]:
    """Decision-level figures of finite (N, C) rows (see :func:`as_rows`), by output kind.

    Shared by the INT8 gate and ``edge-sdk verify``, so both judge an output the same way.
    """
    if kind in ("logits", "probabilities"):
        return _class_figures(ref, new, kind, tie_margin)
    if kind in ("binary", "multilabel_logits"):
        return _decision_figures(ref, new, kind, tie_margin)
    if kind == "regression":
        return _regression_figures(ref, new)
    return _embedding_figures(ref, new)


def compare_output(
    name: str,
    kind: str,
    ref: np.ndarray,
    new: np.ndarray,
    thresholds: GateThresholds,
    tie_margin: float = 0.0,
) -> OutputFigures:
    """Figures and verdict for one output over all held-out samples (concatenated).

    ``tie_margin`` (from the family policy) marks FP32 decisions too close to call; they
    are left out of the agreement (see the module docstring).
    """
    if kind not in KINDS:
        raise EdgeSDKError(f"output {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
    if ref.shape != new.shape:
        raise EdgeSDKError(f"output {name!r}: FP32 shape {ref.shape} != INT8 shape {new.shape}")
    ref, new = as_rows(ref, kind), as_rows(new, kind)
    non_finite = int(np.size(new) - np.isfinite(new).sum())
    samples = int(ref.shape[0])
    failures: list[str] = []
    if non_finite:
        failures.append(f"{non_finite} NaN/Inf values")
        return OutputFigures(
            name, kind, samples, float("inf"), non_finite, failures=tuple(failures)
        )
    figures = kind_figures(ref, new, kind, tie_margin)
    checks = (
        ("agreement", lambda v: v >= thresholds.min_agreement, thresholds.min_agreement, ">="),
        ("max_prob_diff", lambda v: v <= thresholds.max_prob_diff, thresholds.max_prob_diff, "<="),
        ("ccc_delta", lambda v: v <= thresholds.max_ccc_delta, thresholds.max_ccc_delta, "<="),
        ("min_cosine", lambda v: v >= thresholds.min_cosine, thresholds.min_cosine, ">="),
    )
    for key, ok, limit, op in checks:
        if key in figures and not ok(figures[key]):
            failures.append(f"{key} {figures[key]:.4f} (needs {op} {limit})")
    return OutputFigures(
        output=name,
        kind=kind,
        samples=samples,
        max_abs_diff=float(np.abs(ref.astype(np.float64) - new).max()),
        non_finite=0,
        failures=tuple(failures),
        **figures,
    )


def compare_runs(
    reference: list[dict[str, np.ndarray]],
    candidate: list[dict[str, np.ndarray]],
    kinds: dict[str, str],
    thresholds: GateThresholds,
    tie_margin: float = 0.0,
) -> list[OutputFigures]:
    """Per-output figures over paired runs (one dict of outputs per held-out feed)."""
    if not reference or len(reference) != len(candidate):
        raise EdgeSDKError("the gate needs the same, non-zero number of FP32 and INT8 runs")
    results = []
    for name, kind in kinds.items():
        ref = np.concatenate([as_rows(r[name], kind) for r in reference])
        new = np.concatenate([as_rows(c[name], kind) for c in candidate])
        results.append(compare_output(name, kind, ref, new, thresholds, tie_margin))
    return results
