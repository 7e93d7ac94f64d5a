"""face-caf maths against independent references (NumPy/SciPy formulas, brute force)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from edge_sdk.models.face_caf import metrics
from edge_sdk.models.face_caf.family import (
    TINY,
    CafRegressor,
    caf_loss,
    make_model,
    synthetic_batch,
)
from edge_sdk.models.face_caf.losses import (
    TIE_RTOL,
    aknn_confidence,
    av_loss,
    ccc,
    critic_loss,
    fisher_ipm_squared,
    gaussian_channel_mi,
    otsu_threshold,
    pcc,
    rmse,
    strong_mask,
)
from edge_sdk.models.registry import build_module

# --- Otsu ---------------------------------------------------------------------------------------


def _otsu_brute_force(values: np.ndarray, bins: int) -> float:
    """Every candidate edge tried directly on the samples (each quantised to its bin centre)."""
    lo, hi = values.min(), values.max()
    edges = np.linspace(lo, hi, bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    quantised = 0.5 * (edges[index] + edges[index + 1])
    scores = []
    for t in range(1, bins):
        upper = index >= t
        if upper.all() or not upper.any():
            scores.append(0.0)
            continue
        w1 = upper.mean()
        w0 = 1.0 - w1
        scores.append(w0 * w1 * (quantised[~upper].mean() - quantised[upper].mean()) ** 2)
    scores = np.asarray(scores)
    best = int(np.flatnonzero(scores >= scores.max() * (1.0 - TIE_RTOL))[0])
    return float(edges[best + 1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bins", [8, 64, 256])
def test_otsu_equals_brute_force(seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:
        values = rng.uniform(0.0, 1.4, 300)
    elif kind == 1:
        values = np.concatenate([rng.normal(0.2, 0.05, 150), rng.normal(0.8, 0.1, 80)])
    else:
        values = np.sqrt((rng.uniform(-1, 1, (200, 2)) ** 2).sum(axis=1))
    assert otsu_threshold(values, bins) == pytest.approx(_otsu_brute_force(values, bins), abs=0)


def test_otsu_splits_two_clusters_in_the_gap_and_handles_constants() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.0, 0.3, 100), rng.uniform(0.7, 1.0, 50)])
    threshold = otsu_threshold(values, 256)
    assert 0.3 < threshold <= 0.7
    assert otsu_threshold(np.full(5, 0.4)) == 0.4
    with pytest.raises(ValueError):
        otsu_threshold(np.array([0.1, np.nan]))


def test_strong_mask_uses_intensity_and_given_threshold() -> None:
    va = torch.tensor([[0.6, 0.8], [0.1, 0.0], [0.0, -0.5], [-0.3, 0.4]])  # r = 1, .1, .5, .5
    assert strong_mask(va, threshold=0.5).tolist() == [True, False, True, True]
    assert strong_mask(va, threshold=0.7).tolist() == [True, False, False, False]


# --- regression losses and metrics ----------------------------------------------------------


def _numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    return 2 * np.cov(x, y, ddof=0)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", range(3))
def test_torch_rmse_pcc_ccc_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, (50, 2))
    pred = 0.6 * target + rng.normal(0.1, 0.3, (50, 2))
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    want_rmse = np.sqrt(((pred - target) ** 2).mean(axis=0))
    want_pcc = [np.corrcoef(pred[:, k], target[:, k])[0, 1] for k in range(2)]
    want_ccc = [_numpy_ccc(pred[:, k], target[:, k]) for k in range(2)]
    np.testing.assert_allclose(rmse(p, t).numpy(), want_rmse, atol=1e-6)
    np.testing.assert_allclose(pcc(p, t).numpy(), want_pcc, atol=1e-6)
    np.testing.assert_allclose(ccc(p, t).numpy(), want_ccc, atol=1e-6)
    want_av = np.mean(want_rmse + (1 - np.asarray(want_pcc)) + (1 - np.asarray(want_ccc)))
    assert float(av_loss(p, t)) == pytest.approx(want_av, abs=1e-6)
    # the NumPy metrics module agrees with SciPy's Pearson r and the same CCC formula
    got = metrics.va_metrics(pred, target)
    for k, dim in enumerate(metrics.DIMENSIONS):
        assert got[f"rmse_{dim}"] == pytest.approx(want_rmse[k], abs=1e-9)
        assert got[f"pcc_{dim}"] == pytest.approx(stats.pearsonr(pred[:, k], target[:, k])[0])
        assert got[f"ccc_{dim}"] == pytest.approx(want_ccc[k], abs=1e-9)


def test_ccc_penalises_bias_that_pcc_ignores() -> None:
    target = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
    shifted = target + 0.5
    assert float(pcc(shifted, target)) == pytest.approx(1.0, abs=1e-9)
    assert float(ccc(shifted, target)) < 0.9


# --- critic pieces -------------------------------------------------------------------------------


def test_gaussian_channel_mi_matches_density_formula() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, (4, 16)), rng.uniform(-1.5, 1.5, (4, 16))
    sd = math.sqrt(0.2)
    mixture = 0.5 * stats.norm.pdf(y, -1, sd) + 0.5 * stats.norm.pdf(y, 1, sd)
    ratio = stats.norm.pdf(y, x, sd) / mixture
    want = np.log(ratio).mean(axis=1)
    got = gaussian_channel_mi(torch.from_numpy(x), torch.from_numpy(y), 0.2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def _aknn_loop(points: np.ndarray, labels: np.ndarray, a: float, max_k: int) -> np.ndarray:
    n = len(points)
    k_max = min(max_k, n - 1)
    out = []
    for i in range(n):
        dist = np.linalg.norm(points - points[i], axis=1)
        dist[i] = np.inf
        order = np.argsort(dist, kind="stable")
        chosen = k_max
        for k in range(1, k_max + 1):
            share = labels[order[:k]].mean()
            if max(share, 1 - share) - 0.5 > a / math.sqrt(k):
                chosen = k
                break
        out.append(a / math.sqrt(chosen))
    return np.asarray(out)


@pytest.mark.parametrize("separation", [0.0, 3.0])
def test_aknn_confidence_matches_loop(separation: float) -> None:
    rng = np.random.default_rng(2)
    labels = np.arange(24) < 12
    points = rng.normal(0, 1, (24, 3)) + separation * labels[:, None]
    got = aknn_confidence(torch.from_numpy(points), torch.from_numpy(labels), 0.7, 10).numpy()
    np.testing.assert_allclose(got, _aknn_loop(points, labels.astype(float), 0.7, 10))
    if separation:
        assert got.mean() > 0.7 / math.sqrt(10)  # separable groups: small k, wide margin


def test_critic_loss_value_and_dual_ascent_gradient() -> None:
    rng = np.random.default_rng(3)
    strong = torch.from_numpy(rng.normal(0.5, 0.3, (5, 4)))
    weak = torch.from_numpy(rng.normal(-0.2, 0.3, (3, 4)))
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    loss = critic_loss(strong, weak, lam, rho=0.5)
    # independent recomputation with explicit loops over the reversed pairing
    s, w = strong.numpy()[:3], weak.numpy()
    labels = np.array([1, 1, 1, 0, 0, 0], dtype=float)
    delta = _aknn_loop(np.concatenate([s, w]), labels, 0.7, 10)[:3]
    sd = math.sqrt(0.2)
    d_ap, d_an = [], []
    for i in range(3):
        pos, neg = s[2 - i], w[2 - i]
        dens = 0.5 * stats.norm.pdf(neg, -1, sd) + 0.5 * stats.norm.pdf(neg, 1, sd)
        mi = np.clip(np.log(stats.norm.pdf(neg, s[i], sd) / dens).mean(), 0.0, 2.5)
        d_ap.append(((s[i] - pos) ** 2).sum())
        d_an.append(max(0.0, mi + delta[i] - ((s[i] - neg) ** 2).sum()))
    d_ap, d_an = np.asarray(d_ap), np.asarray(d_an)
    constraint = 1 - 0.5 * ((d_ap**2).mean() + (d_an**2).mean())
    want = d_ap.mean() + d_an.mean() + 0.3 * constraint + 0.25 * constraint**2
    assert float(loss.detach()) == pytest.approx(want, rel=1e-9)
    loss.backward()
    assert float(lam.grad) == pytest.approx(-constraint, rel=1e-9)  # descent = dual ascent


def test_fisher_ipm_closed_form_is_the_best_linear_witness() -> None:
    rng = np.random.default_rng(4)
    p = torch.from_numpy(rng.normal(0.4, 1.0, (200, 5)))
    q = torch.from_numpy(rng.normal(-0.1, 0.8, (150, 5)))
    value = float(fisher_ipm_squared(q, p, ridge=0.0))

    def ratio(w: np.ndarray) -> float:
        fp, fq = p.numpy() @ w, q.numpy() @ w
        return (fp.mean() - fq.mean()) ** 2 / (0.5 * (fp**2).mean() + 0.5 * (fq**2).mean())

    second = 0.5 * (p.numpy().T @ p.numpy() / 200 + q.numpy().T @ q.numpy() / 150)
    best = np.linalg.solve(second, p.numpy().mean(0) - q.numpy().mean(0))
    assert value == pytest.approx(ratio(best), rel=1e-9)
    assert all(ratio(w) <= value + 1e-12 for w in rng.normal(size=(500, 5)))
    assert 0.0 <= value <= 4.0


# --- the family's objective ------------------------------------------------------------------


def _grads(config, batch) -> dict[str, bool]:
    torch.manual_seed(0)
    model = make_model(config).train()
    caf_loss(model, batch).backward()
    groups = {"encoder": model.regressor.encoder, "head": model.regressor.head}
    groups["critic"] = model.critic
    out = {
        name: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mod.parameters())
        for name, mod in groups.items()
    }
    out["lambda"] = model.fisher_lambda.grad is not None and float(model.fisher_lambda.grad) != 0
    return out


def test_loss_terms_train_only_their_own_parameters() -> None:
    batch = synthetic_batch(TINY, np.random.default_rng(5), 8)
    only = {
        "critic": dataclasses.replace(TINY, weight_av=0.0, weight_adversarial=0.0),
        "adversarial": dataclasses.replace(TINY, weight_av=0.0, weight_critic=0.0),
        "av": dataclasses.replace(TINY, weight_critic=0.0, weight_adversarial=0.0),
    }
    assert _grads(only["critic"], batch) == {
        "encoder": False,
        "head": False,
        "critic": True,
        "lambda": True,
    }
    assert _grads(only["adversarial"], batch) == {
        "encoder": True,
        "head": False,
        "critic": False,
        "lambda": False,
    }
    assert _grads(only["av"], batch) == {
        "encoder": True,
        "head": True,
        "critic": False,
        "lambda": False,
    }


def test_given_strong_mask_is_used_and_one_group_batches_are_pure_av() -> None:
    batch = synthetic_batch(TINY, np.random.default_rng(6), 6)
    torch.manual_seed(0)
    model = make_model(TINY).eval()
    with torch.no_grad():
        prediction, _ = model(batch["face"])
        av = float(av_loss(prediction, batch["valence_arousal"]))
        all_strong = float(caf_loss(model, {**batch, "strong": torch.ones(6, dtype=torch.bool)}))
        split = float(caf_loss(model, {**batch, "strong": torch.arange(6) < 3}))
    assert all_strong == pytest.approx(av, rel=1e-6)
    assert split != pytest.approx(av, rel=1e-6)


def test_regressor_rebuilds_from_json_config() -> None:
    config = json.loads(json.dumps(dataclasses.asdict(TINY)))
    module = build_module("face_caf_regressor", config)
    assert isinstance(module, CafRegressor) and module.config == TINY
    va, features = module.eval()(torch.randn(3, 3, TINY.image_size, TINY.image_size))
    assert va.shape == (3, 2) and features.shape == (3, TINY.feature_dim)
    assert bool((va.abs() <= 1).all())
