"""NumPy accuracy metrics against scikit-learn / SciPy on random inputs (many seeds)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.metrics import (
    TASKS,
    ClassificationMetrics,
    MultiLabelMetrics,
    ValenceArousalMetrics,
    average_precision,
    compute_metrics,
)

skm = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")
# scikit-learn warns about ill-defined figures and single-label inputs: those are the cases
# compared on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:sklearn")


def _quiet(fn, *args, **kwargs):
    """scikit-learn warns on ill-defined precision/recall; the values are what we compare."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _random_classification(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels with absent classes on either side, sometimes a single class, n down to 1."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    n = int(rng.integers(1, 60))
    true_classes = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    pred_classes = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    y_true = rng.choice(true_classes, size=n)
    y_pred = rng.choice(pred_classes, size=n)
    agree = rng.random(n) < rng.random()  # some runs nearly perfect, some near chance
    y_pred = np.where(agree & np.isin(y_true, pred_classes), y_true, y_pred)
    return y_true, y_pred, k


@pytest.mark.parametrize("chunk", range(4))
def test_classification_matches_scikit_learn(chunk: int) -> None:
    for seed in range(chunk * 50, chunk * 50 + 50):
        _check_classification(seed)


def _check_classification(seed: int) -> None:
    y_true, y_pred, k = _random_classification(seed)
    got = compute_metrics("classification", y_true, y_pred, labels=[f"c{i}" for i in range(k)])
    assert isinstance(got, ClassificationMetrics) and got.n == len(y_true)
    assert got.war == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert got.uar == pytest.approx(_quiet(skm.balanced_accuracy_score, y_true, y_pred), abs=1e-12)
    for average in ("macro", "weighted"):
        want = _quiet(skm.f1_score, y_true, y_pred, average=average, zero_division=0)
        assert getattr(got, f"{average}_f1") == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(
        got.confusion, skm.confusion_matrix(y_true, y_pred, labels=list(range(k)))
    )
    precision, recall, f1, support = _quiet(
        skm.precision_recall_fscore_support, y_true, y_pred, labels=list(range(k)), zero_division=0
    )
    np.testing.assert_array_equal(got.support, support)
    predicted = np.bincount(y_pred, minlength=k)
    for i in range(k):  # defined figures agree; undefined ones are NaN, not sklearn's 0
        assert math.isnan(got.precision[i]) == (predicted[i] == 0)
        assert math.isnan(got.recall[i]) == (support[i] == 0)
        assert math.isnan(got.f1[i]) == (support[i] + predicted[i] == 0)
        for mine, theirs in ((got.precision, precision), (got.recall, recall), (got.f1, f1)):
            if not math.isnan(mine[i]):
                assert mine[i] == pytest.approx(theirs[i], abs=1e-12)


def test_scores_are_argmaxed() -> None:
    for seed in range(40):
        y_true, _, k = _random_classification(seed)
        scores = np.random.default_rng(seed + 1000).random((len(y_true), k))
        pred = scores.argmax(axis=1)
        from_scores = compute_metrics("classification", y_true, scores)
        from_indices = compute_metrics("classification", y_true, pred, labels=[""] * k)
        assert from_scores.war == pytest.approx(skm.accuracy_score(y_true, pred))
        assert from_scores.confusion.shape == (k, k)
        np.testing.assert_array_equal(from_scores.confusion, from_indices.confusion)
        assert from_scores.macro_f1 == from_indices.macro_f1


def test_single_class_and_fixed_cases() -> None:
    perfect = compute_metrics("classification", [0, 0, 0], [0, 0, 0])
    assert (perfect.war, perfect.uar, perfect.macro_f1, perfect.weighted_f1) == (1, 1, 1, 1)
    assert perfect.labels == ("0",) and perfect.confusion.tolist() == [[3]]
    wrong = compute_metrics("classification", [0, 0], [1, 1], labels=["a", "b", "c"])
    assert (wrong.war, wrong.uar, wrong.macro_f1, wrong.weighted_f1) == (0, 0, 0, 0)
    assert wrong.confusion.tolist() == [[0, 2, 0], [0, 0, 0], [0, 0, 0]]
    assert math.isnan(wrong.f1[2]) and wrong.support == (2, 0, 0)
    # hand-computed: true [0,0,1,2], pred [0,1,1,1]
    m = compute_metrics("classification", [0, 0, 1, 2], [0, 1, 1, 1])
    assert m.war == 0.5 and m.uar == pytest.approx((0.5 + 1 + 0) / 3)
    assert m.f1 == pytest.approx((2 / 3, 0.5, 0.0))
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.5) / 3)
    assert m.weighted_f1 == pytest.approx((2 * 2 / 3 + 0.5) / 4)


# --------------------------------------------------------------------------- multi-label
def _random_multilabel(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 50)), int(rng.integers(1, 10))
    truth = (rng.random((n, k)) < rng.uniform(0.05, 0.6, size=k)).astype(np.int64)
    truth[:, rng.random(k) < 0.2] = 0  # some classes without any positive
    scores = truth * rng.uniform(0, 1.5) + rng.random((n, k))
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # many tied scores
    return truth, scores


@pytest.mark.parametrize("chunk", range(4))
def test_average_precision_matches_scikit_learn(chunk: int) -> None:
    for seed in range(chunk * 50, chunk * 50 + 50):
        _check_average_precision(seed)


def _check_average_precision(seed: int) -> None:
    truth, scores = _random_multilabel(seed)
    got = compute_metrics("multilabel", truth, scores)
    assert isinstance(got, MultiLabelMetrics)
    has_positive = truth.sum(axis=0) > 0
    assert got.positives == tuple(int(v) for v in truth.sum(axis=0))
    want = [
        skm.average_precision_score(truth[:, j], scores[:, j]) if has_positive[j] else np.nan
        for j in range(truth.shape[1])
    ]
    np.testing.assert_allclose(got.average_precision, want, atol=1e-12)
    if has_positive.any():
        assert got.mean_ap == pytest.approx(np.mean(np.asarray(want)[has_positive]), abs=1e-12)
    else:
        assert math.isnan(got.mean_ap)
    if has_positive.all():
        macro = skm.average_precision_score(truth, scores, average="macro")
        assert got.mean_ap == pytest.approx(macro, abs=1e-12)


def test_average_precision_fixed_cases() -> None:
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(
        0.5 * 1 + 0.5 * (2 / 3)
    )
    assert average_precision([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # one tied threshold
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0
    assert math.isnan(average_precision([0, 0], [0.3, 0.2]))


# --------------------------------------------------------------------------- valence/arousal
@pytest.mark.parametrize("seed", range(0, 50, 5))
def test_valence_arousal_matches_scipy_and_scikit_learn(seed: int) -> None:
    for offset in range(5):
        _check_valence_arousal(seed + offset)


def _check_valence_arousal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 80))
    target = rng.uniform(-1, 1, (n, 2))
    pred = np.clip(rng.uniform(0, 1) * target + rng.normal(0.1, 0.3, (n, 2)), -1, 1)
    got = compute_metrics("valence_arousal", target, pred)
    assert isinstance(got, ValenceArousalMetrics) and got.labels == ("valence", "arousal")
    for j in range(2):
        p, t = pred[:, j], target[:, j]
        assert got.rmse[j] == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)), abs=1e-12)
        assert got.pcc[j] == pytest.approx(stats.pearsonr(p, t)[0], abs=1e-9)
        ccc = 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
        assert got.ccc[j] == pytest.approx(ccc, abs=1e-9)
    assert got.scores["ccc_arousal"] == got.ccc[1]


def test_va_metrics_live_in_one_place() -> None:
    from edge_sdk import metrics
    from edge_sdk.models.face_caf import metrics as face_caf_metrics

    assert face_caf_metrics.ccc is metrics.ccc and face_caf_metrics.va_metrics is metrics.va_metrics
    pred, target = (
        np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.9]]),
        np.array([[0, 0], [0.4, 0.2], [1, 1]]),
    )
    assert (
        metrics.va_metrics(pred, target) == compute_metrics("valence_arousal", target, pred).scores
    )


# --------------------------------------------------------------------------- API and errors
def test_to_dict_is_json_with_nan_as_null() -> None:
    m = compute_metrics("classification", [0, 0, 1], [0, 1, 1], labels=["happy", "sad", "fear"])
    data = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert data["task"] == "classification" and data["labels"] == ["happy", "sad", "fear"]
    assert data["scores"]["war"] == pytest.approx(2 / 3)
    assert data["per_class"]["fear"] == {
        "precision": None,
        "recall": None,
        "f1": None,
        "support": 0,
    }
    assert data["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    ml = compute_metrics(
        "multilabel", [[1, 0], [0, 0]], [[0.9, 0.2], [0.1, 0.3]], labels=["a", "b"]
    )
    data = json.loads(json.dumps(ml.to_dict(), allow_nan=False))
    assert data["scores"] == {"map": 1.0} and data["per_class"]["b"] == {"ap": None, "positives": 0}
    va = compute_metrics("valence_arousal", [[0.1, 0.2], [0.3, 0.5]], [[0.1, 0.1], [0.2, 0.4]])
    assert set(json.loads(json.dumps(va.to_dict()))["scores"]) == {
        f"{m}_{d}" for m in ("rmse", "pcc", "ccc") for d in ("valence", "arousal")
    }
    assert set(TASKS) == {"classification", "multilabel", "valence_arousal"}


@pytest.mark.parametrize(
    ("task", "y_true", "y_pred", "labels", "message"),
    [
        ("regression", [0], [0], None, "unknown metrics task 'regression'"),
        ("classification", [], [], None, "no samples"),
        ("classification", [0, 1], [0], None, "y_true has 2 samples, y_pred 1"),
        ("classification", [0, 3], [0, 1], ["a", "b"], "y_true has class index 3 >= 2"),
        ("classification", [0, 1], [0, -1], None, "negative class index"),
        ("classification", [0.5, 1], [0, 1], None, "non-integer"),
        ("classification", [0, 1], [[0.1, np.nan], [0.2, 0.3]], None, "NaN"),
        (
            "classification",
            [0, 1],
            [[0.1, 0.9], [0.2, 0.3]],
            ["a", "b", "c"],
            "3 labels given for 2",
        ),
        ("classification", [[0], [1]], [0, 1], None, "1-D class indices"),
        ("multilabel", [[0, 2]], [[0.1, 0.2]], None, "0/1"),
        ("multilabel", [[0, 1]], [[0.1, 0.2, 0.3]], None, "2 classes, y_score 3"),
        ("valence_arousal", [[0.1, 0.2]], [[0.1]], None, "differ in shape"),
        ("valence_arousal", [[0.1, 0.2, 0.3]], [[0.1, 0.2, 0.3]], None, r"\(n, 2\)"),
    ],
)
def test_bad_inputs_are_input_errors(task, y_true, y_pred, labels, message) -> None:
    with pytest.raises(InputError, match=message):
        compute_metrics(task, np.asarray(y_true), np.asarray(y_pred), labels=labels)
