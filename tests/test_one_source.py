"""calibrate and verify share one feed source and one comparator: the same data gives them
the same samples, and the same arrays the same figures."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.feeds import collect_feeds
from calibration.gate import GateThresholds, compare_output
from edge_sdk.checks.compare import check_output
from edge_sdk.checks.feeds import load_feeds
from edge_sdk.checks.tolerances import Tolerance
from edge_sdk.errors import InputError

RNG = np.random.default_rng(11)


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and a perturbed candidate per output kind, float32 as runtimes return them."""

    def noisy(ref: np.ndarray, scale: float) -> np.ndarray:
        return (ref + RNG.normal(scale=scale, size=ref.shape)).astype(np.float32)

    logits = RNG.normal(size=(200, 7)).astype(np.float32)
    flipped = noisy(logits, 0.05)
    flipped[:6] = -flipped[:6]  # a few decisions change: the agreement criterion is missed
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    scores = RNG.uniform(size=(1, 9, 11)).astype(np.float32)
    values = RNG.uniform(-1, 1, size=(300, 2)).astype(np.float32)
    features = RNG.normal(size=(50, 16)).astype(np.float32)
    return {
        "logits": (logits, flipped),
        "probabilities": (probs.astype(np.float32), noisy(probs, 0.01)),
        "binary": (scores, np.clip(noisy(scores, 0.02), 0, 1)),
        "multilabel_logits": (logits[:, :5], noisy(logits[:, :5], 0.1)),
        "regression": (values, noisy(values, 0.2)),
        "embedding": (features, noisy(features, 0.3)),
    }


@pytest.mark.parametrize("kind", list(_pairs()))
def test_the_gate_and_verify_give_the_same_figures_on_the_same_arrays(kind: str) -> None:
    ref, new = _pairs()[kind]
    thresholds = GateThresholds()
    gate = compare_output("y", kind, ref, new, thresholds)
    tolerance = Tolerance("int8", **thresholds.to_dict())
    checked = check_output("g", "y", kind, [("data", ref, new)], tolerance)
    for figure in ("agreement", "max_prob_diff", "ccc_delta", "min_cosine"):
        assert getattr(checked, figure) == getattr(gate, figure), figure
    assert checked.max_abs == gate.max_abs_diff
    assert [f.split()[0] for f in checked.failures] == [f.split()[0] for f in gate.failures]
    if kind in ("logits", "regression", "embedding"):
        assert not gate.passed  # the perturbations are large enough to be judged


def _npz(tmp_path, rows: int = 12):
    images = np.arange(rows, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 1, 64, 64), np.float32
    ) / rows
    labels = np.arange(rows) % 7
    path = tmp_path / "feeds.npz"
    np.savez(path, **{"classifier/image": images, "classifier/probabilities:labels": labels})
    return path, images, labels


def test_verify_and_calibrate_draw_the_same_samples_from_an_npz(
    face_bundle, device, tmp_path
) -> None:
    path, _, labels = _npz(tmp_path)
    collected = collect_feeds(face_bundle, device, str(path), 5, 3)
    loaded = load_feeds(path, face_bundle, device, count=5, seed=3)["classifier"]
    drawn = np.concatenate([f["image"] for f in collected.feeds["classifier"]])
    verified = np.concatenate([run["image"] for run in loaded.runs])
    assert np.array_equal(drawn, verified)
    rows = [round(float(v) * 12) for v in drawn[:, 0, 0, 0]]
    assert rows != [0, 1, 2, 3, 4]  # drawn by the seed, not the first rows
    assert loaded.labels["probabilities"].tolist() == labels[rows].tolist()
    assert collected.labels["classifier"]["probabilities"].tolist() == labels[rows].tolist()


def test_calibration_data_naming_no_graph_of_the_bundle_is_refused(
    face_bundle, device, tmp_path
) -> None:
    _, images, _ = _npz(tmp_path)
    misspelt = tmp_path / "misspelt.npz"
    np.savez(misspelt, **{"classifier/image": images, "clasifier/image": images})
    with pytest.raises(InputError, match="'clasifier/image' names no graph"):
        collect_feeds(face_bundle, device, str(misspelt), None, 0)
