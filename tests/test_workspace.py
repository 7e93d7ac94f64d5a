"""CocoER workspace: the exact simplex QP against scipy, a hand-computed case, the competition's
order, coordination only through θ_l, torch autograd == numpy analytic, and a real bundle."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from edge_sdk.errors import BundleError, InputError
from edge_sdk.workspace import (
    LEVELS,
    Workspace,
    WorkspaceResult,
    qp_objective,
    solve_simplex_qp,
)

BACKENDS = ("torch", "numpy")
KINDS = ("general", "identical", "pair", "zero", "zero_one", "collinear", "affine", "near", "real")


# ------------------------------------------------------------------------------- QP vs scipy
def _scipy_qp(gram: np.ndarray, f: np.ndarray) -> np.ndarray:
    """SLSQP (a general NLP/QP solver) on the same problem, as an independent reference.

    Scaled by max(max Q_ii, max |f|) (same minimiser) and started from the centre; when that
    end point fails its KKT check, also from the best vertex, keeping the better end point:
    SLSQP alone stalls on flat or tiny-gradient instances (its quasi-Newton start is the
    identity).
    """
    q = len(f)
    scale = max(gram.diagonal().max(), np.abs(f).max(), 1e-300)
    qs, fs = gram / scale, f / scale
    starts = [np.full(q, 1.0 / q), np.eye(q)[np.argmin(0.5 * qs.diagonal() - fs)]]
    best, best_value = starts[1], qp_objective(qs, fs, starts[1])
    for start in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = minimize(
                lambda x: 0.5 * x @ qs @ x - fs @ x,
                start,
                jac=lambda x: qs @ x - fs,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * q,
                constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": np.ones_like}],
                options={"ftol": 1e-16, "maxiter": 1000},
            )
        x = np.clip(out.x, 0.0, None)
        x /= x.sum()
        if qp_objective(qs, fs, x) < best_value:
            best, best_value = x, qp_objective(qs, fs, x)
        r = qs @ best - fs
        if r[best > 1e-9].max() - r.min() <= 1e-12:
            break  # certified optimal
    return best


def _instance(rng: np.random.Generator, q: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(G (q, n), f (q,)) of one category; scales from 1e-3 to 1e3, some losses tied."""
    n = int(rng.choice([1, 2, 5, 40]))
    scale = 10.0 ** rng.uniform(-3, 3)
    g = rng.normal(size=(q, n)) * scale
    if kind == "identical":  # every level has the same gradient
        g[:] = g[0]
    elif kind == "pair" and q > 1:
        g[1] = g[0]
    elif kind == "zero":  # all gradients zero: a linear program on the simplex
        g[:] = 0.0
    elif kind == "zero_one":
        g[rng.integers(q)] = 0.0
    elif kind == "collinear":
        g = g[0] * rng.uniform(-2, 2, (q, 1))
    elif kind == "affine" and q == 3:  # three gradients on one line: singular 3-support
        t = rng.uniform(-1, 2)
        g[2] = t * g[0] + (1 - t) * g[1]
    elif kind == "near" and q > 1:
        g[-1] = g[0] + 1e-7 * scale * rng.normal(size=n)
    elif kind == "real":  # the workspace's own structure: rows e_m z_mᵀ
        k, d = int(rng.integers(2, 8)), int(rng.integers(1, 9))
        logits = rng.normal(size=(q, k)) * 2
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = rng.dirichlet(np.ones(k))
        g = ((p - y)[:, :, None] * rng.normal(size=(q, 1, d))).reshape(q, -1)
    f = rng.uniform(0.0, 3.0, q)
    if rng.uniform() < 0.2:
        f[:] = f[0]  # tied losses
    return g, f


def _tangent_unique(g: np.ndarray, f: np.ndarray) -> bool:
    """λ is unique when no d ≠ 0 has Gᵀd = 0, Σd = 0 and fᵀd = 0 (well inside tolerance)."""
    q = len(f)
    if q == 1:
        return True
    scale = max(np.abs(g).max(), np.abs(f).max(), 1e-300)
    system = np.vstack([g.T / scale, np.ones((1, q)), f[None] / scale])
    return np.linalg.svd(system, compute_uv=False)[-1] > 1e-3


@pytest.mark.parametrize("q, per_kind", [(1, 15), (2, 100), (3, 120)])
def test_qp_matches_scipy_on_random_and_degenerate_instances(q: int, per_kind: int) -> None:
    rng = np.random.default_rng(100 + q)
    cases = [_instance(rng, q, kind) for kind in KINDS for _ in range(per_kind)]
    grams = np.stack([g @ g.T for g, _ in cases])
    losses = np.stack([f for _, f in cases])
    batched = solve_simplex_qp(grams, losses)  # all at once, like the workspace
    compared_lambda = 0
    for (g, f), gram, lam in zip(cases, grams, batched, strict=True):
        assert np.all(lam >= 0.0) and lam.sum() == pytest.approx(1.0, abs=1e-15)
        np.testing.assert_array_equal(solve_simplex_qp(gram, f), lam)  # unbatched: same
        # An exact optimality certificate, independent of scipy: r = Qλ - f is equal on the
        # support and no smaller anywhere else (KKT of the simplex QP).
        r = gram @ lam - f
        tol = 1e-9 * max(1.0, gram.diagonal().max(), np.abs(f).max())
        assert r[lam > 1e-9].max() - r.min() <= tol
        reference = _scipy_qp(gram, f)
        ours, theirs = qp_objective(gram, f, lam), qp_objective(gram, f, reference)
        size = max(1.0, abs(theirs), gram.diagonal().max())
        assert ours <= theirs + 1e-12 * size  # never worse than the general solver
        assert abs(ours - theirs) <= 1e-6 * size
        # δ = -Gᵀλ is unique even where λ is not (identical / zero gradients, tied losses).
        scale = max(1.0, np.abs(g).max())
        np.testing.assert_allclose(g.T @ lam, g.T @ reference, rtol=0, atol=1e-6 * scale)
        if _tangent_unique(g, f):
            np.testing.assert_allclose(lam, reference, rtol=0, atol=1e-6)
            compared_lambda += 1
    assert compared_lambda > len(cases) // 3


def test_qp_degenerate_closed_forms() -> None:
    # q = 1: the only point of the simplex.
    assert solve_simplex_qp(np.array([[4.0]]), np.array([1.0])).tolist() == [1.0]
    # Zero gradients: a linear program; the largest loss takes all the weight.
    assert solve_simplex_qp(np.zeros((3, 3)), np.array([0.2, 0.9, 0.5])).tolist() == [0, 1, 0]
    # Identical gradients and equal losses: every λ is optimal; the ridge picks the centre.
    lam = solve_simplex_qp(np.full((3, 3), 2.0), np.full(3, 0.7))
    np.testing.assert_allclose(lam, np.full(3, 1 / 3), atol=1e-9)
    # Identical gradients, distinct losses: the vertex of the largest loss.
    assert solve_simplex_qp(np.full((2, 2), 5.0), np.array([0.1, 0.3])).tolist() == [0, 1]
    # Orthogonal unit gradients, equal losses: the centre, ½ each (Q = I).
    np.testing.assert_allclose(solve_simplex_qp(np.eye(2), np.ones(2)), [0.5, 0.5], atol=1e-15)
    # Two levels, interior: λ_1 = (f_1 - f_2 + Q_22 - Q_12) / (Q_11 + Q_22 - 2 Q_12).
    gram, f = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([1.0, 0.8])
    lam1 = (f[0] - f[1] + gram[1, 1] - gram[0, 1]) / (gram[0, 0] + gram[1, 1] - 2 * gram[0, 1])
    np.testing.assert_allclose(solve_simplex_qp(gram, f), [lam1, 1 - lam1], atol=1e-15)
    # Inactive levels get 0.
    lam = solve_simplex_qp(np.eye(3), np.ones(3), np.array([True, False, True]))
    np.testing.assert_allclose(lam, [0.5, 0.0, 0.5], atol=1e-15)
    with pytest.raises(InputError):
        solve_simplex_qp(np.eye(2), np.array([np.nan, 1.0]))
    with pytest.raises(InputError):
        solve_simplex_qp(np.eye(2), np.ones(2), np.zeros(2, bool))


# ------------------------------------------------------------------------- hand-computed case
def _hand_case() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """k = 2, d = 2, y_t = (1, 0): z_c = (1, 0), z_b = (0, 1), z_h = (1, 1); θ chosen so the
    logits are (a_m, 0) with a = (0, log 3, log 4): p_m(class 0) = 1/2, 3/4, 4/5."""
    theta = {
        "context": np.zeros((2, 2)),
        "body": np.array([[0.0, math.log(3)], [0.0, 0.0]]),
        "head": np.array([[math.log(4), 0.0], [0.0, 0.0]]),
    }
    outputs = {
        "z_c": np.array([[1.0, 0.0]]),
        "z_b": np.array([[0.0, 1.0]]),
        "z_h": np.array([[1.0, 1.0]]),
        "y_t": np.array([[1.0, 0.0]]),
    }
    return theta, outputs


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_case(backend: str) -> None:
    """Worked by hand. c_m = 1 - p_m(class 0) = (1/2, 1/4, 1/5); f_m = -log(1 - c_m);
    G_m = (p_m - y) z_mᵀ = c_m [[-z_m], [z_m]]; Q_ij = 2 c_i c_j (z_i·z_j):
    Q_cc = 1/2, Q_bb = 1/8, Q_hh = 4/25, Q_cb = 0, Q_ch = 1/5, Q_bh = 1/10.
    Round 1, Z = {c, b, h}: the optimum has support {c, b}:
        λ_c = (f_c - f_b + Q_bb) / (Q_cc + Q_bb) = 8/5 (log 3/2 + 1/8), λ_b = 1 - λ_c,
        and r_h = Q_ch λ_c + Q_bh λ_b - f_h is above r_c = r_b (KKT).
        δ1 = -(λ_c G_c + λ_b G_b) = [[λ_c/2, λ_b/4], [-λ_c/2, -λ_b/4]]; remove c (log 2 largest).
    Round 2, Z = {b, h}: the interior formula gives λ_b = (log(16/15) + 0.06) / 0.085 > 1, so
        λ = (1, 0) at vertex b; δ2 = -G_b = [[0, 1/4], [0, -1/4]]; remove b; h is kept.
    δ_l = δ1 + δ2 and, with η = 1, the refined class-0 probabilities are
        sigmoid(λ_c), sigmoid(log 3 + λ_b/2 + 1/2), sigmoid(log 4 + λ_c + λ_b/2 + 1/2).
    """
    theta, outputs = _hand_case()
    result = Workspace(theta, multi_label=False, backend=backend).update(outputs)
    lam_c = 8 / 5 * (math.log(1.5) + 1 / 8)
    lam_b = 1 - lam_c
    np.testing.assert_allclose(result.losses[0], [math.log(2), math.log(4 / 3), math.log(5 / 4)])
    np.testing.assert_allclose(result.lambdas[0], [[lam_c, lam_b, 0.0], [0.0, 1.0, 0.0]])
    assert result.removed_names(0) == ("context", "body") and result.kept_name(0) == "head"
    delta = np.array([[lam_c / 2, lam_b / 4 + 1 / 4], [-lam_c / 2, -lam_b / 4 - 1 / 4]])
    np.testing.assert_allclose(result.delta[0], delta, rtol=0, atol=1e-14)

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    refined = [
        sigmoid(lam_c),
        sigmoid(math.log(3) + lam_b / 2 + 1 / 2),
        sigmoid(math.log(4) + lam_c + lam_b / 2 + 1 / 2),
    ]
    np.testing.assert_allclose(result.level_probabilities[0, :, 0], refined, atol=1e-14)
    np.testing.assert_allclose(result.probabilities[0, 0], np.mean(refined), atol=1e-14)
    np.testing.assert_allclose(result.initial_probabilities[0, :, 0], [0.5, 0.75, 0.8])


# --------------------------------------------------------------------------------- competition
def _random_case(
    rng: np.random.Generator, batch: int, k: int = 7, d: int = 16, multi: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    theta = {m: rng.normal(0, 0.6, (k, d)) for m in LEVELS}
    y = rng.uniform(0, 1, (batch, k)) if multi else rng.dirichlet(np.ones(k) * 0.5, batch)
    outputs = {n: rng.normal(size=(batch, d)) for n in ("z_c", "z_b", "z_h")}
    outputs["y_t"] = y
    return theta, outputs


@pytest.mark.parametrize("backend", BACKENDS)
def test_competition_removes_the_largest_loss_first(backend: str) -> None:
    theta, outputs = _random_case(np.random.default_rng(3), batch=64)
    result = Workspace(theta, multi_label=False, backend=backend).update(outputs)
    order = np.argsort(-result.losses, axis=1, kind="stable")
    np.testing.assert_array_equal(result.removed, order[:, :2])
    np.testing.assert_array_equal(result.kept, order[:, 2])
    assert len({tuple(r) for r in result.removed}) > 3  # the random rows do differ
    # Round 2 gives the removed level no weight; λ rows lie on the simplex.
    rows = np.arange(64)
    assert np.all(result.lambdas[rows, 1, result.removed[:, 0]] == 0.0)
    np.testing.assert_allclose(result.lambdas.sum(axis=2), 1.0, atol=1e-14)
    # Make the head's loss the largest in row 0 (its θ pushes mass away from y_t's argmax).
    head = theta["head"].copy()
    head[np.argmax(outputs["y_t"][0])] -= (
        50.0 * outputs["z_h"][0] / outputs["z_h"][0] @ outputs["z_h"][0]
    )
    result = Workspace({**theta, "head": head}, multi_label=False, backend=backend).update(outputs)
    assert result.removed_names(0)[0] == "head"


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_coordination_changes_predictions_only_through_theta_l(backend: str, multi: bool) -> None:
    rng = np.random.default_rng(4)
    theta, outputs = _random_case(rng, batch=8, multi=multi)
    eta = 0.7
    workspace = Workspace(theta, multi_label=multi, eta=eta, backend=backend)
    result = workspace.update(outputs)
    stacked = np.stack([theta[m] for m in LEVELS])
    z = np.stack([outputs[n] for n in ("z_c", "z_b", "z_h")], axis=1)
    # Refined level logits are exactly (θ_l^m + η δ_l) z_m with the reported δ_l.
    tilde = stacked[None] + eta * result.delta[:, None]
    logits = np.einsum("blkd,bld->blk", tilde, z)
    if multi:
        expected = 1 / (1 + np.exp(-logits))
    else:
        expected = np.exp(logits - logits.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(result.level_probabilities, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.probabilities, expected.mean(axis=1), atol=1e-12)
    assert not np.allclose(result.level_probabilities, result.initial_probabilities)
    # η = 0: no change at all; z_t and level_logits (unchecked) do not matter; θ stays intact.
    still = Workspace(theta, multi_label=multi, eta=0.0, backend=backend).update(outputs)
    np.testing.assert_array_equal(still.level_probabilities, still.initial_probabilities)
    extra = {**outputs, "z_t": rng.normal(size=(8, 16)), "level_logits": np.zeros((8, 3, 7))}
    again = workspace.update(extra)
    for name, value in result.to_arrays().items():
        np.testing.assert_array_equal(again.to_arrays()[name], value)
    np.testing.assert_array_equal(workspace.theta, stacked)


@pytest.mark.parametrize("multi", [False, True])
def test_torch_autograd_equals_numpy_analytic_and_training_loss(multi: bool) -> None:
    import torch

    from edge_sdk.models.scene_cocoer.family import level_loss

    rng = np.random.default_rng(5)
    theta, outputs = _random_case(rng, batch=16, k=26 if multi else 7, d=32, multi=multi)
    # float32 pseudo labels, as an engine gives them (a softmax row sums to 1 only to ~1e-7)
    outputs = {n: v.astype(np.float32) for n, v in outputs.items()}
    by_torch = Workspace(theta, multi_label=multi, backend="torch").update(outputs)
    by_numpy = Workspace(theta, multi_label=multi, backend="numpy").update(outputs)
    for name, value in by_torch.to_arrays().items():
        np.testing.assert_allclose(by_numpy.to_arrays()[name], value, rtol=1e-10, atol=1e-12)
    # f_m is the training loss L(s_m, y_t) of edge_sdk.models.scene_cocoer.family for one row.
    stacked = torch.tensor(np.stack([theta[m] for m in LEVELS]))
    for row in range(3):
        for m, name in enumerate(("z_c", "z_b", "z_h")):
            logits = stacked[m] @ torch.tensor(outputs[name][row], dtype=torch.float64)
            target = torch.tensor(outputs["y_t"][row : row + 1], dtype=torch.float64)
            expected = level_loss(logits[None], target, multi)
            assert by_torch.losses[row, m] == pytest.approx(float(expected), rel=1e-12)


def test_rows_are_independent() -> None:
    theta, outputs = _random_case(np.random.default_rng(6), batch=5)
    workspace = Workspace(theta, multi_label=False, backend="numpy")
    batched = workspace.update(outputs)
    for row in range(5):
        single = workspace.update({n: v[row : row + 1] for n, v in outputs.items()})
        for name, value in single.to_arrays().items():
            np.testing.assert_allclose(value[0], batched.to_arrays()[name][row], atol=1e-12)


# ------------------------------------------------------------------------- errors, files, bundle
def test_bad_inputs_raise_input_error() -> None:
    theta, outputs = _random_case(np.random.default_rng(7), batch=2)
    workspace = Workspace(theta, multi_label=False, backend="numpy")
    bad = [
        {n: v for n, v in outputs.items() if n != "z_b"},
        {**outputs, "z_h": outputs["z_h"][:, :5]},
        {**outputs, "y_t": outputs["y_t"][:1]},
        {**outputs, "z_c": np.full((2, 16), np.nan)},
        {**outputs, "y_t": outputs["y_t"] * 3},
        {**outputs, "z_c": np.array([["a"] * 16] * 2)},
        {**outputs, "y_t": np.zeros((0, 7)), **{n: np.zeros((0, 16)) for n in ("z_c", "z_b")}},
    ]
    for case in bad:
        with pytest.raises(InputError):
            workspace.update(case)
    with pytest.raises(InputError):
        workspace.update([outputs])  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Workspace({"context": np.ones((2, 2))}, multi_label=False)
    with pytest.raises(InputError):
        Workspace({**theta, "head": np.ones((3, 3))}, multi_label=False)
    with pytest.raises(InputError):
        Workspace(theta, multi_label=False, backend="tensorrt")


def test_save_load_round_trip(tmp_path) -> None:
    theta, outputs = _random_case(np.random.default_rng(8), batch=3)
    labels = [f"class{i}" for i in range(7)]
    original = Workspace(theta, multi_label=False, eta=0.5, labels=labels, backend="numpy")
    path = original.save(tmp_path / "workspace.safetensors")
    loaded = Workspace.load(path, backend="torch")
    assert loaded.fingerprint() == original.fingerprint() and loaded.eta == 0.5
    a, b = original.update(outputs), loaded.update(outputs)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-12)
    assert b.label(0) in labels
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError):
        Workspace.load(tmp_path / "junk.safetensors")


def test_result_from_arrays_checks_shapes() -> None:
    theta, outputs = _random_case(np.random.default_rng(9), batch=2)
    result = Workspace(theta, multi_label=False, backend="numpy").update(outputs)
    arrays = result.to_arrays()
    rebuilt = WorkspaceResult.from_arrays(arrays)
    np.testing.assert_array_equal(rebuilt.delta, result.delta)
    with pytest.raises(InputError):
        WorkspaceResult.from_arrays({**arrays, "losses": arrays["losses"][:, :2]})
    with pytest.raises(InputError):
        WorkspaceResult.from_arrays({**arrays, "kept": np.array([0, 7])})
    with pytest.raises(InputError):
        WorkspaceResult.from_arrays({n: v for n, v in arrays.items() if n != "delta"})


def test_exported_bundle_graph_outputs_feed_the_workspace(tmp_path) -> None:
    """The real path: export a tiny scene-cocoer bundle, run both ONNX graphs with ONNX
    Runtime, hand their merged outputs to the bundle's workspace."""
    import onnxruntime as ort

    from export.family_export import export_family

    bundle = export_family("scene-cocoer", tmp_path / "scene", None, "tiny", untrained=True)
    rng = np.random.default_rng(10)
    feeds = {}
    for graph in bundle.manifest.graphs:
        for spec in graph.inputs:
            shape = [3 if isinstance(n, str) else n for n in spec.shape]
            feeds[spec.name] = rng.normal(size=shape).astype(np.float32)
    outputs: dict[str, np.ndarray] = {}
    for graph in bundle.manifest.graphs:
        (artifact,) = [a for a in bundle.manifest.artifacts_for(graph.name) if a.format == "onnx"]
        session = ort.InferenceSession(
            str(bundle.artifact_path(artifact)), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        values = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
        outputs.update(zip(names, values, strict=True))
    assert {"z_c", "z_b", "z_h", "level_logits", "y_t", "z_t"} <= set(outputs)
    workspace = Workspace.from_bundle(bundle.root, logits_atol=1e-4)
    result = workspace.update(outputs)  # level_logits agree with the bundle's θ_l
    assert result.probabilities.shape == (3, 7) and result.labels == bundle.manifest.labels
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert workspace.eta == bundle.manifest.config["workspace"]["eta"]
    np.testing.assert_allclose(
        result.initial_probabilities,
        np.exp(outputs["level_logits"]) / np.exp(outputs["level_logits"]).sum(-1, keepdims=True),
        atol=1e-5,
    )
    numpy_result = Workspace.from_bundle(bundle, backend="numpy").update(outputs)
    np.testing.assert_allclose(numpy_result.probabilities, result.probabilities, atol=1e-12)
    # A workspace holding other θ_l than the engine is caught by the level_logits check.
    other = {m: w + 0.1 for m, w in zip(LEVELS, workspace.theta, strict=True)}
    with pytest.raises(InputError, match="same θ_l"):
        Workspace(other, multi_label=False, logits_atol=1e-4).update(outputs)
    with pytest.raises(BundleError):
        Workspace.from_bundle(tmp_path / "missing")
