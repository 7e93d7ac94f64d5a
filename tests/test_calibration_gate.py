"""The INT8 accuracy gate's figures, checked against direct numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.gate import GateThresholds, compare_output, compare_runs, concordance
from calibration.policy import policy_for
from edge_sdk.errors import EdgeSDKError

RNG = np.random.default_rng(3)
THRESHOLDS = GateThresholds()


def test_concordance_matches_lins_formula() -> None:
    for _ in range(20):
        a, b = RNG.normal(size=50), RNG.normal(size=50) * 0.5 + 0.2
        expected = (
            2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
        )
        assert concordance(a, b) == pytest.approx(expected, rel=1e-9)
    assert concordance(np.ones(5), np.ones(5)) == 1.0


def test_identical_logits_pass_and_flipped_decisions_fail() -> None:
    logits = RNG.normal(size=(200, 7)).astype(np.float32)
    same = compare_output("logits", "logits", logits, logits.copy(), THRESHOLDS)
    assert same.passed and same.agreement == 1.0 and same.max_prob_diff == 0.0
    flipped = logits.copy()
    flipped[:10] = -flipped[:10]  # 10 of 200 rows change their argmax
    result = compare_output("logits", "logits", logits, flipped, THRESHOLDS)
    changed = np.mean(logits.argmax(1) == flipped.argmax(1))
    assert result.agreement == pytest.approx(changed)
    assert not result.passed and "agreement" in result.failures[0]


def test_non_finite_int8_output_fails_whatever_else() -> None:
    ref = RNG.normal(size=(10, 3)).astype(np.float32)
    bad = ref.copy()
    bad[2, 1] = np.nan
    result = compare_output("x", "embedding", ref, bad, THRESHOLDS)
    assert not result.passed and result.non_finite == 1


def test_regression_uses_ccc_per_column() -> None:
    ref = RNG.uniform(-1, 1, size=(300, 2)).astype(np.float32)
    close = ref + RNG.normal(scale=0.01, size=ref.shape).astype(np.float32)
    ok = compare_output("va", "regression", ref, close, THRESHOLDS)
    expected = max(1 - concordance(ref[:, c], close[:, c]) for c in range(2))
    assert ok.passed and ok.ccc_delta == pytest.approx(expected)
    biased = close.copy()
    biased[:, 1] += 0.3  # arousal shifted: CCC drops although PCC would not
    assert not compare_output("va", "regression", ref, biased, THRESHOLDS).passed


def test_embedding_cosine_and_binary_scores() -> None:
    ref = RNG.normal(size=(50, 16))
    rotated = ref + RNG.normal(scale=0.5, size=ref.shape)
    result = compare_output("z", "embedding", ref, rotated, THRESHOLDS)
    cos = (ref * rotated).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(rotated, axis=1)
    assert result.min_cosine == pytest.approx(cos.min()) and not result.passed
    scores = RNG.uniform(size=(1, 9, 11))
    moved = scores.copy()
    moved[0, 0, 0] = 1 - moved[0, 0, 0] if abs(moved[0, 0, 0] - 0.5) > 0.01 else 0.9
    binary = compare_output("prob", "binary", scores, moved, THRESHOLDS)
    assert binary.samples == 99


def test_runs_of_different_map_sizes_concatenate() -> None:
    runs = [{"prob": RNG.uniform(size=(1, h, h + 1))} for h in (5, 8, 13)]
    figures = compare_runs(runs, runs, {"prob": "binary"}, THRESHOLDS)
    assert figures[0].passed and figures[0].samples == sum(h * (h + 1) for h in (5, 8, 13))
    with pytest.raises(EdgeSDKError):
        compare_runs(runs, runs[:2], {"prob": "binary"}, THRESHOLDS)
    with pytest.raises(EdgeSDKError, match="unknown kind"):
        compare_output("x", "vibes", np.zeros(3), np.zeros(3), THRESHOLDS)


def test_every_family_policy_names_every_output(face_bundle) -> None:
    policy = policy_for(face_bundle.manifest)
    assert set(policy.kinds) == {g.name for g in face_bundle.manifest.graphs}
