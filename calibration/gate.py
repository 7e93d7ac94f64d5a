"""The accuracy gate: INT8 against FP32 on held-out samples, per output.

This module is the SDK's one comparator of a candidate's outputs with a reference's:
:func:`compare_arrays` measures one output over paired arrays (element-wise differences,
NaN/Inf, the decision-level figures below) and judges the figures against limits;
``edge-sdk calibrate`` (:func:`compare_output`, :func:`compare_runs`) and ``edge-sdk
verify`` (:mod:`edge_sdk.checks.compare`) both call it, so the same arrays give the same
figures in both.

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
fails the gate whatever the other figures say. Figures are computed in float64.

Decisions that FP32 itself barely makes (top-2 probability margin, or ``|2p - 1|`` for a
score, below the policy's ``tie_margin``) are *undecided*: a flip between two near-equal
classes says nothing about INT8, so they are left out of the agreement and reported as the
``undecided`` fraction. ``max_prob_diff`` still covers every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from edge_sdk.errors import EdgeSDKError
from edge_sdk.parity import ParityRule, check_parity
from edge_sdk.pipelines.common import sigmoid, softmax

KINDS = ("logits", "probabilities", "multilabel_logits", "binary", "regression", "embedding")
# Decision-level criteria: (figure, the limit's attribute name, how the figure must compare).
CRITERIA = (
    ("agreement", "min_agreement", ">="),
    ("max_prob_diff", "max_prob_diff", "<="),
    ("ccc_delta", "max_ccc_delta", "<="),
    ("min_cosine", "min_cosine", ">="),
)
REL_FLOOR = 1e-6  # |reference| below this counts as this when reporting relative error


class Limits(Protocol):
    """Decision-level pass criteria; ``None`` means "not judged" (GateThresholds, or
    verify's Tolerance)."""

    @property
    def min_agreement(self) -> float | None: ...

    @property
    def max_prob_diff(self) -> float | None: ...

    @property
    def max_ccc_delta(self) -> float | None: ...

    @property
    def min_cosine(self) -> float | None: ...


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


# The figure functions below take (N, C) float64 rows as made by as_rows.


def _agreement(same: np.ndarray, margin: np.ndarray, tie_margin: float) -> dict[str, float]:
    """Agreement over the decided rows (FP32 margin >= tie_margin) and the undecided share."""
    decided = margin >= tie_margin
    agreement = float(np.mean(same[decided])) if decided.any() else 1.0
    return {"agreement": agreement, "undecided": float(1.0 - np.mean(decided))}


def _class_figures(
    ref: np.ndarray, new: np.ndarray, kind: str, tie_margin: float
) -> dict[str, float]:
    if kind == "logits":
        ref_p, new_p = softmax(ref, np.float64), softmax(new, np.float64)
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
        ref, new = sigmoid(ref, np.float64), sigmoid(new, np.float64)
    ref, new = ref.reshape(-1), new.reshape(-1)
    figures = _agreement((ref >= 0.5) == (new >= 0.5), np.abs(2 * ref - 1), tie_margin)
    return {**figures, "max_prob_diff": float(np.abs(ref - new).max())}


def _regression_figures(ref: np.ndarray, new: np.ndarray) -> dict[str, float]:
    if ref.shape[0] < 2:
        return {}  # concordance needs a spread of values
    worst = max(1.0 - concordance(ref[:, c], new[:, c]) for c in range(ref.shape[1]))
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
    """Decision-level figures of finite (N, C) rows (see :func:`as_rows`), by output kind."""
    ref, new = ref.astype(np.float64, copy=False), new.astype(np.float64, copy=False)
    if kind in ("logits", "probabilities"):
        return _class_figures(ref, new, kind, tie_margin)
    if kind in ("binary", "multilabel_logits"):
        return _decision_figures(ref, new, kind, tie_margin)
    if kind == "regression":
        return _regression_figures(ref, new)
    return _embedding_figures(ref, new)


def missed_limits(
    figures: dict[str, float], limits: Limits, value_spec: str = ".4f", limit_spec: str = ""
) -> list[str]:
    """One line per decision-level figure outside its limit (limits of None are not judged).

    ``value_spec``/``limit_spec`` are format specs: ``calibrate`` has always printed four
    decimals (the defaults), ``verify`` four significant digits (``".4g"``, ``"g"``).
    """
    missed = []
    for key, attribute, op in CRITERIA:
        limit = getattr(limits, attribute)
        if key not in figures or limit is None:
            continue
        value = figures[key]
        if not (value >= limit if op == ">=" else value <= limit):
            missed.append(
                f"{key} {format(value, value_spec)} (needs {op} {format(limit, limit_spec)})"
            )
    return missed


@dataclass(frozen=True)
class Comparison:
    """One output of a candidate against its reference over labelled pairs of arrays.

    Attributes:
        kind: how the output is read (:data:`KINDS`).
        elements, rows: values compared; rows as :func:`as_rows` makes them.
        max_abs, mean_abs, max_rel: element-wise differences over finite values
            (relative to ``|reference|``, floored at :data:`REL_FLOOR`).
        worst_ratio: ``max |c - r| / allowed`` under the element-wise rule (None: no rule).
        worst_size, by_size: the pair label where ``max_abs`` occurred; ``max_abs`` per label.
        non_finite, reference_non_finite: NaN/Inf counts in the candidate / reference.
        figures: decision-level figures by kind (:func:`kind_figures`) over every pair
            whose values are all finite.
        failures: shape mismatches, NaN/Inf, the element-wise rule exceeded.
        missed: decision-level limits missed (callers decide whether they fail).
        reference_rows, candidate_rows: the rows ``figures`` were computed on (label metrics).
    """

    kind: str
    elements: int
    rows: int
    max_abs: float
    mean_abs: float
    max_rel: float
    worst_ratio: float | None
    worst_size: str
    by_size: dict[str, float]
    non_finite: int
    reference_non_finite: int
    figures: dict[str, float]
    failures: tuple[str, ...]
    missed: tuple[str, ...]
    reference_rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    candidate_rows: np.ndarray | None = field(default=None, repr=False, compare=False)


class _Tally:
    """Running element-wise figures of one output over its pairs (see :class:`Comparison`)."""

    def __init__(self, kind: str, rule: ParityRule | None) -> None:
        self.kind, self.rule = kind, rule
        self.failures: list[str] = []
        self.by_size: dict[str, float] = {}
        self.ref_rows: list[np.ndarray] = []
        self.new_rows: list[np.ndarray] = []
        self.max_abs = self.sum_abs = self.max_rel = 0.0
        self.worst_ratio: float | None = 0.0 if rule is not None else None
        self.worst_size = ""
        self.elements = self.rows = self.non_finite = self.ref_non_finite = 0

    def add(self, label: str, ref: np.ndarray, new: np.ndarray) -> None:
        if ref.shape != new.shape:
            self.failures.append(f"shape {new.shape} != reference {ref.shape} at {label}")
            return
        ref64, new64 = ref.astype(np.float64), new.astype(np.float64)
        bad_new, bad_ref = ~np.isfinite(new64), ~np.isfinite(ref64)
        self.non_finite += int(bad_new.sum())
        self.ref_non_finite += int(bad_ref.sum())
        finite = ~(bad_new | bad_ref)
        diff = np.abs(new64 - ref64)[finite]
        self.elements += int(ref.size)
        self.rows += int(as_rows(ref64, self.kind).shape[0])
        size_max = float(diff.max()) if diff.size else 0.0
        self.by_size[label] = size_max
        if size_max >= self.max_abs:
            self.max_abs, self.worst_size = size_max, label
        self.sum_abs += float(diff.sum())
        if diff.size:
            magnitude = np.abs(ref64[finite])
            self.max_rel = max(self.max_rel, float((diff / np.maximum(magnitude, REL_FLOOR)).max()))
            if self.rule is not None and self.worst_ratio is not None:
                ratio = check_parity(self.kind, ref64, new64, self.rule).ratio
                self.worst_ratio = max(self.worst_ratio, ratio)
        if finite.all():
            self.ref_rows.append(as_rows(ref64, self.kind))
            self.new_rows.append(as_rows(new64, self.kind))

    def element_failures(self) -> list[str]:
        failures = list(self.failures)
        if self.non_finite:
            failures.append(f"{self.non_finite} NaN/Inf values")
        if self.ref_non_finite:
            failures.append(f"the reference has {self.ref_non_finite} NaN/Inf values")
        rule = self.rule
        if rule is not None and self.worst_ratio is not None and self.worst_ratio > 1.0:
            failures.append(
                f"max |diff| {self.max_abs:.3g} at {self.worst_size} exceeds atol {rule.atol:g} "
                f"+ rtol {rule.rtol:g} * {'|ref|' if rule.scale == 'element' else rule.scale} "
                f"({self.worst_ratio:.3g}x the allowed error)"
            )
        return failures


def compare_arrays(
    kind: str,
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    limits: Limits,
    *,
    rule: ParityRule | None = None,
    tie_margin: float = 0.0,
    value_spec: str = ".4f",
    limit_spec: str = "",
) -> Comparison:
    """Compare one output over ``(label, reference, candidate)`` pairs: the one comparator.

    Args:
        kind: how the output is read.
        pairs: the output per feed set (verify) or all held-out samples at once (the gate).
        limits: decision-level criteria (:class:`GateThresholds`, verify's Tolerance).
        rule: element-wise rule; None judges no element-wise error.
        tie_margin: FP32 decisions closer than this are left out of the agreement.
        value_spec, limit_spec: how missed limits print (:func:`missed_limits`).
    """
    tally = _Tally(kind, rule)
    for label, ref, new in pairs:
        tally.add(label, ref, new)
    figures: dict[str, float] = {}
    ref_all = new_all = None
    if tally.ref_rows and len({r.shape[1] for r in tally.ref_rows}) == 1:
        ref_all, new_all = np.concatenate(tally.ref_rows), np.concatenate(tally.new_rows)
        figures = kind_figures(ref_all, new_all, kind, tie_margin)
    return Comparison(
        kind=kind,
        elements=tally.elements,
        rows=tally.rows,
        max_abs=tally.max_abs,
        mean_abs=tally.sum_abs / tally.elements if tally.elements else 0.0,
        max_rel=tally.max_rel,
        worst_ratio=tally.worst_ratio,
        worst_size=tally.worst_size,
        by_size=tally.by_size,
        non_finite=tally.non_finite,
        reference_non_finite=tally.ref_non_finite,
        figures=figures,
        failures=tuple(tally.element_failures()),
        missed=tuple(missed_limits(figures, limits, value_spec, limit_spec)),
        reference_rows=ref_all,
        candidate_rows=new_all,
    )


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
    found = compare_arrays(kind, [("holdout", ref, new)], thresholds, tie_margin=tie_margin)
    if found.non_finite:  # nothing else is measured on NaN/Inf outputs
        return OutputFigures(
            name, kind, found.rows, float("inf"), found.non_finite, failures=found.failures
        )
    return OutputFigures(
        output=name,
        kind=kind,
        samples=found.rows,
        max_abs_diff=found.max_abs,
        non_finite=0,
        failures=found.failures + found.missed,
        **found.figures,
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
