"""Accuracy metrics in NumPy: classification, multi-label and valence/arousal regression.

One entry point, :func:`compute_metrics` ``(task, y_true, y_pred)``, dispatches through a
registry of tasks (``classification``, ``multilabel``, ``valence_arousal``, the same names as
:attr:`edge_sdk.datasets.Dataset.task`) and returns a typed, frozen result with ``to_dict()``.
No scikit-learn or torch at run time: accuracy checks run on devices that only have ONNX
Runtime. The definitions follow scikit-learn so that figures agree with published ones:

* WAR = accuracy (``accuracy_score``); UAR = mean recall over the classes present in
  ``y_true`` (``balanced_accuracy_score``).
* Per-class F1 = 2 tp / (2 tp + fp + fn). Macro F1 averages it over the classes that occur in
  ``y_true`` or in the predictions (``f1_score(average="macro")`` without ``labels=``);
  weighted F1 weights it by support (``average="weighted"``). Per-class precision, recall or
  F1 that are undefined (0 / 0) are NaN here rather than scikit-learn's ``zero_division`` 0,
  so a report never shows a made-up 0; the averages are unaffected.
* Confusion matrix: rows are true classes, columns predicted, over all ``k`` labels.
* Multi-label: average precision per class exactly as ``average_precision_score`` (step-wise
  sum of (R_n - R_{n-1}) P_n over the distinct score thresholds, no interpolation); mAP is
  the mean over the classes that have at least one positive (AP is undefined, NaN, for the
  others, which EMOTIC-style evaluations leave out).
* Valence/arousal: RMSE, Pearson (PCC) and Lin's concordance (CCC) per dimension, with
  population moments (``ddof=0``), the convention of the torch losses in
  :mod:`edge_sdk.models.face_caf.losses`, so a training loss and an evaluation figure agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edge_sdk.errors import InputError

DIMENSIONS = ("valence", "arousal")


# --------------------------------------------------------------------------- valence/arousal
def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (n, k) views of predictions and targets; 1-D inputs become one column."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise InputError(f"predictions {p.shape} and targets {t.shape} differ in shape")
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    if p.ndim != 2 or p.shape[0] == 0:
        raise InputError(f"expected (n, k) arrays with n >= 1, got {p.shape}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise InputError("predictions or targets contain NaN or Inf")
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
    return valence_arousal_metrics(target, pred).scores


# --------------------------------------------------------------------------- result types
def _json_float(value: float) -> float | None:
    """A float for JSON: NaN (undefined) becomes None."""
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class ClassificationMetrics:
    """Single-label figures over ``labels`` (index i of every tuple is ``labels[i]``).

    Attributes:
        labels: class names in index order.
        n: number of samples.
        war: accuracy (weighted average recall).
        uar: mean recall over the classes present in ``y_true`` (unweighted average recall).
        macro_f1: mean F1 over the classes present in ``y_true`` or the predictions.
        weighted_f1: F1 weighted by each class's support.
        confusion: (k, k) int64 counts, row = true class, column = predicted class.
        precision, recall, f1: per class; NaN where undefined (0 / 0).
        support: true samples per class.
    """

    task: ClassVar[str] = "classification"
    labels: tuple[str, ...]
    n: int
    war: float
    uar: float
    macro_f1: float
    weighted_f1: float
    confusion: np.ndarray
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]

    @property
    def scores(self) -> dict[str, float]:
        """The headline figures by name."""
        return {
            "war": self.war,
            "uar": self.uar,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: task, n, labels, scores, per-class figures, confusion (NaN -> None)."""
        per_class = {
            label: {
                "precision": _json_float(self.precision[i]),
                "recall": _json_float(self.recall[i]),
                "f1": _json_float(self.f1[i]),
                "support": int(self.support[i]),
            }
            for i, label in enumerate(self.labels)
        }
        return {
            "task": self.task,
            "n": self.n,
            "labels": list(self.labels),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
        }


@dataclass(frozen=True)
class MultiLabelMetrics:
    """Multi-label figures (EMOTIC-style): AP per class and their mean.

    Attributes:
        labels: class names in column order.
        n: number of samples.
        mean_ap: mean of ``average_precision`` over the classes with a positive (NaN if none).
        average_precision: per class; NaN for a class without any positive sample.
        positives: positive samples per class.
    """

    task: ClassVar[str] = "multilabel"
    labels: tuple[str, ...]
    n: int
    mean_ap: float
    average_precision: tuple[float, ...]
    positives: tuple[int, ...]

    @property
    def scores(self) -> dict[str, float]:
        """The headline figures by name."""
        return {"map": self.mean_ap}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: task, n, labels, scores, per-class AP and positives (NaN -> None)."""
        per_class = {
            label: {
                "ap": _json_float(self.average_precision[i]),
                "positives": int(self.positives[i]),
            }
            for i, label in enumerate(self.labels)
        }
        return {
            "task": self.task,
            "n": self.n,
            "labels": list(self.labels),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "per_class": per_class,
        }


@dataclass(frozen=True)
class ValenceArousalMetrics:
    """Regression figures per dimension (valence, arousal by default).

    Attributes:
        labels: dimension names in column order.
        n: number of samples.
        rmse, pcc, ccc: per dimension.
    """

    task: ClassVar[str] = "valence_arousal"
    labels: tuple[str, ...]
    n: int
    rmse: tuple[float, ...]
    pcc: tuple[float, ...]
    ccc: tuple[float, ...]

    @property
    def scores(self) -> dict[str, float]:
        """``rmse_<dim>``, ``pcc_<dim>``, ``ccc_<dim>`` for every dimension."""
        out: dict[str, float] = {}
        for name in ("rmse", "pcc", "ccc"):
            for dim, value in zip(self.labels, getattr(self, name), strict=True):
                out[f"{name}_{dim}"] = float(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: task, n, labels and scores."""
        return {
            "task": self.task,
            "n": self.n,
            "labels": list(self.labels),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
        }


Metrics = ClassificationMetrics | MultiLabelMetrics | ValenceArousalMetrics


# --------------------------------------------------------------------------- classification
def _class_indices(values: np.ndarray, what: str) -> np.ndarray:
    """A 1-D int64 array of class indices, refusing fractions, NaN and negatives."""
    if values.ndim != 1:
        raise InputError(f"{what} must be 1-D class indices, got shape {values.shape}")
    if values.dtype.kind == "b" or values.dtype.kind not in "iuf":
        raise InputError(f"{what} must hold integer class indices, got dtype {values.dtype}")
    if values.dtype.kind == "f" and (
        not np.isfinite(values).all() or (values != np.round(values)).any()
    ):
        raise InputError(f"{what} must hold integer class indices, got non-integer values")
    out = values.astype(np.int64)
    if (out < 0).any():
        raise InputError(f"{what} has a negative class index {int(out.min())}")
    return out


def _scores(values: np.ndarray, n: int, what: str) -> np.ndarray:
    """A finite float64 (n, k) score matrix."""
    if values.ndim != 2 or values.shape[0] != n or values.shape[1] == 0:
        raise InputError(f"{what} must be ({n}, k) scores, got shape {values.shape}")
    if values.dtype.kind not in "iufb":
        raise InputError(f"{what} must be numeric, got dtype {values.dtype}")
    out = values.astype(np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{what} contains NaN or Inf")
    return out


def _names(labels: Sequence[str] | None, k: int, what: str) -> tuple[str, ...]:
    if labels is None:
        return tuple(str(i) for i in range(k))
    names = tuple(labels)
    if len(names) != k:
        raise InputError(f"{len(names)} labels given for {k} {what}")
    return names


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str] | None = None
) -> ClassificationMetrics:
    """WAR, UAR, macro/weighted F1, confusion matrix and per-class figures.

    Args:
        y_true: (n,) true class indices.
        y_pred: (n,) predicted class indices, or (n, k) scores/probabilities (argmax taken;
            ties go to the lower index, like ``np.argmax``).
        labels: class names; their count is k. Without it k comes from the scores' width or
            the largest index seen.

    Raises:
        InputError: empty or mismatched inputs, non-integer or out-of-range indices.
    """
    true = _class_indices(np.asarray(y_true), "y_true")
    n = true.shape[0]
    if n == 0:
        raise InputError("no samples to score")
    pred_in = np.asarray(y_pred)
    if pred_in.ndim == 2:
        scores = _scores(pred_in, n, "y_pred")
        pred = scores.argmax(axis=1)
        k = scores.shape[1]
    else:
        pred = _class_indices(pred_in, "y_pred")
        if pred.shape[0] != n:
            raise InputError(f"y_true has {n} samples, y_pred {pred.shape[0]}")
        k = int(max(true.max(), pred.max())) + 1
    if labels is not None:
        if pred_in.ndim == 2 and len(labels) != k:
            raise InputError(f"{len(labels)} labels given for {k} score columns")
        k = len(labels)
    names = _names(labels, k, "classes")
    for what, values in (("y_true", true), ("y_pred", pred)):
        if values.max() >= k:
            raise InputError(f"{what} has class index {int(values.max())} >= {k} classes")

    confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1_den = support + predicted  # = 2 tp + fp + fn
        f1 = np.where(f1_den > 0, 2.0 * tp / f1_den, np.nan)
    seen = f1_den > 0
    return ClassificationMetrics(
        labels=names,
        n=n,
        war=float(tp.sum() / n),
        uar=float(recall[support > 0].mean()),
        macro_f1=float(f1[seen].mean()),
        weighted_f1=float(np.sum(f1[seen] * support[seen]) / n),
        confusion=confusion.astype(np.int64),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in support),
    )


# --------------------------------------------------------------------------- multi-label
def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one class, as scikit-learn's ``average_precision_score``.

    AP = sum_i (R_i - R_{i-1}) P_i over the distinct score thresholds in decreasing order
    (tied scores form one threshold), R_0 = 0. NaN when ``truth`` has no positive.
    """
    truth = np.asarray(truth, dtype=np.float64)
    positives = truth.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    ranked = np.asarray(score, dtype=np.float64)[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tps = np.cumsum(truth[order])[ends]
    precision = tps / (ends + 1)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(
    y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str] | None = None
) -> MultiLabelMetrics:
    """AP per class and mAP for (n, k) binary targets and (n, k) scores.

    Raises:
        InputError: shapes differ, targets other than 0/1, NaN scores, no samples.
    """
    truth = np.asarray(y_true)
    if truth.ndim != 2 or truth.shape[0] == 0 or truth.shape[1] == 0:
        raise InputError(f"y_true must be (n, k) with n, k >= 1, got shape {truth.shape}")
    if truth.dtype.kind not in "iufb" or not np.isin(truth, (0, 1)).all():
        raise InputError("y_true must hold 0/1 (multi-hot) targets")
    n, k = truth.shape
    scores = _scores(np.asarray(y_score), n, "y_score")
    if scores.shape[1] != k:
        raise InputError(f"y_true has {k} classes, y_score {scores.shape[1]}")
    names = _names(labels, k, "classes")
    ap = np.array([average_precision(truth[:, j], scores[:, j]) for j in range(k)])
    defined = ~np.isnan(ap)
    return MultiLabelMetrics(
        labels=names,
        n=n,
        mean_ap=float(ap[defined].mean()) if defined.any() else float("nan"),
        average_precision=tuple(float(v) for v in ap),
        positives=tuple(int(v) for v in truth.astype(np.int64).sum(axis=0)),
    )


# --------------------------------------------------------------------------- valence/arousal
def valence_arousal_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str] | None = None
) -> ValenceArousalMetrics:
    """RMSE, PCC and CCC per dimension of (n, d) targets and predictions (d = len(labels)).

    Raises:
        InputError: shapes differ or do not match ``labels`` (default valence, arousal).
    """
    p, t = _pair(y_pred, y_true)
    names = tuple(labels) if labels is not None else DIMENSIONS
    if p.shape[1] != len(names):
        raise InputError(f"expected (n, {len(names)}) arrays for {names}, got {p.shape}")
    return ValenceArousalMetrics(
        labels=names,
        n=int(p.shape[0]),
        rmse=tuple(float(v) for v in rmse(p, t)),
        pcc=tuple(float(v) for v in pcc(p, t)),
        ccc=tuple(float(v) for v in ccc(p, t)),
    )


TASKS: dict[str, Callable[..., Metrics]] = {
    ClassificationMetrics.task: classification_metrics,
    MultiLabelMetrics.task: multilabel_metrics,
    ValenceArousalMetrics.task: valence_arousal_metrics,
}


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
) -> Metrics:
    """Score predictions for one of :data:`TASKS`.

    Args:
        task: ``"classification"`` (y_pred = indices or (n, k) scores), ``"multilabel"``
            (y_true multi-hot (n, k), y_pred scores (n, k)) or ``"valence_arousal"``
            (both (n, 2)); :attr:`edge_sdk.datasets.Dataset.task` gives it for a data set.
        y_true: targets, e.g. :meth:`edge_sdk.datasets.Dataset.y_true`.
        y_pred: predictions or scores.
        labels: class or dimension names, in index order.

    Raises:
        InputError: unknown task or unusable arrays.
    """
    if task not in TASKS:
        raise InputError(f"unknown metrics task {task!r}; known: {sorted(TASKS)}")
    return TASKS[task](y_true, y_pred, labels)
