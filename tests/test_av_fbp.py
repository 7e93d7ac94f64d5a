"""av-fbp maths against independent numpy references: attention, FBP fusion, masks, loss."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from edge_sdk.models.av_fbp.blocks import (
    AudioFCN,
    FactorizedBilinearPooling,
    ScaledAttentionPool,
    signed_sqrt,
)
from edge_sdk.models.av_fbp.family import (
    AFEW_LABELS,
    CONFIGS,
    av_fbp_loss,
    export_build,
    make_model,
    mel_frames,
    synthetic_batch,
    synthetic_labels,
)
from edge_sdk.preprocess.audio import MelConfig, log_mel

TINY = CONFIGS["tiny"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _attention_numpy(pool: ScaledAttentionPool, x: np.ndarray, lam: float) -> np.ndarray:
    """Σ_i exp(λ e_i) / Σ_k exp(λ e_k) x_i with e_i = u^T tanh(W x_i + b), float64."""
    w, b, u = _np(pool.proj.weight), _np(pool.proj.bias), _np(pool.score.weight)[0]
    e = np.tanh(x @ w.T + b) @ u  # (B, L)
    weights = np.exp(lam * e)
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights[..., None] * x).sum(axis=1)


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_attention_matches_numpy_scaled_softmax(lam: float) -> None:
    torch.manual_seed(0)
    pool = ScaledAttentionPool(6, 5, lam)
    with torch.no_grad():
        pool.score.weight.mul_(4.0)  # peaky weights, so softmax is far from the mean
    x = np.random.default_rng(0).normal(size=(3, 11, 6))
    got = pool(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, _attention_numpy(pool, x, lam), atol=1e-5)
    assert np.abs(got - x.mean(axis=1)).max() > 1e-2


def test_attention_with_lambda_zero_is_exactly_the_mean() -> None:
    torch.manual_seed(1)
    pool = ScaledAttentionPool(4, 3, 0.0)
    x = torch.randn(2, 9, 4) * 10
    alpha = pool.weights(x)
    assert torch.equal(alpha, torch.full_like(alpha, 1.0 / 9))
    torch.testing.assert_close(pool(x), x.mean(dim=1), rtol=0, atol=1e-6)


def test_attention_rejects_lambda_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="λ"):
        ScaledAttentionPool(4, 3, 1.5)


def test_masked_attention_equals_attention_on_the_valid_items() -> None:
    torch.manual_seed(2)
    pool = ScaledAttentionPool(5, 4, 1.0)
    x = torch.randn(1, 7, 5)
    padded = torch.cat([x, 100 * torch.randn(1, 3, 5)], dim=1)
    mask = torch.arange(10)[None] < 7
    torch.testing.assert_close(pool(padded, mask), pool(x), rtol=0, atol=1e-6)


def test_fbp_fusion_matches_numpy_bilinear_forms() -> None:
    """z_j = a^T (U_j V_j^T) v summed over rank k, then signed sqrt and L2, in numpy."""
    torch.manual_seed(3)
    m, n, k, o, eps = 6, 5, 3, 4, 1e-6
    fusion = FactorizedBilinearPooling(m, n, k, o, eps)
    rng = np.random.default_rng(3)
    a, v = rng.normal(size=(2, m)), rng.normal(size=(2, n))
    U, V = _np(fusion.audio_proj.weight).T, _np(fusion.video_proj.weight).T  # (m, ko), (n, ko)
    z = np.zeros((2, o))
    for j in range(o):
        window = slice(j * k, (j + 1) * k)
        bilinear = U[:, window] @ V[:, window].T  # (m, n), rank k
        z[:, j] = np.einsum("bm,mn,bn->b", a, bilinear, v)
    power = np.sign(z) * (np.sqrt(np.abs(z) + eps) - np.sqrt(eps))
    want = power / np.linalg.norm(power, axis=1, keepdims=True)
    ta, tv = torch.tensor(a, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)
    np.testing.assert_allclose(fusion.pooled(ta, tv).detach().numpy(), z, atol=1e-5)
    np.testing.assert_allclose(fusion(ta, tv).detach().numpy(), want, atol=1e-5)


def test_signed_sqrt_is_continuous_with_bounded_finite_gradient() -> None:
    eps = 1e-6
    z = torch.tensor([-4.0, -1e-9, 0.0, 1e-9, 4.0], requires_grad=True)
    out = signed_sqrt(z, eps)
    out.sum().backward()
    out = out.detach()
    assert torch.isfinite(z.grad).all()
    assert float(z.grad.max()) <= 1.0 / (2.0 * math.sqrt(eps)) + 1e-3
    assert float(out[2]) == 0.0 and abs(float(out[1])) < 1e-6 and abs(float(out[3])) < 1e-6
    torch.testing.assert_close(out[[0, 4]], torch.tensor([-2.0, 2.0]), rtol=0, atol=1e-3)


@pytest.mark.parametrize("frames", [1, 5, 48, 798])
def test_fcn_keeps_ceil_cells_for_any_length(frames: int) -> None:
    fcn = AudioFCN((2, 3, 4)).eval()
    cells = fcn(torch.randn(1, 1, 32, frames))
    assert cells.shape == (1, math.ceil(32 / 8) * math.ceil(frames / 8), 4)


def test_cell_mask_marks_the_cells_of_the_valid_frames() -> None:
    fcn = AudioFCN((2, 3))  # 2 pools: time cells = ceil(t / 4)
    mask = fcn.cell_mask(torch.tensor([17, 4, 1]), mel_frames=20, n_mels=8)
    grid = mask.reshape(3, 2, 5)  # (B, F', T'), frequency-major like the FCN output
    assert grid[:, 0].sum(dim=1).tolist() == [5, 1, 1]
    assert torch.equal(grid[:, 0], grid[:, 1])


def test_video_mask_gives_the_unpadded_clips_embedding() -> None:
    torch.manual_seed(4)
    model = make_model(TINY).eval()
    faces = torch.randn(1, 3, TINY.face_dim)
    padded = torch.cat([faces, torch.randn(1, 5, TINY.face_dim)], dim=1)
    mask = torch.arange(8)[None] < 3
    with torch.no_grad():
        torch.testing.assert_close(
            model.video_embedding(padded, mask), model.video_embedding(faces), rtol=0, atol=1e-6
        )


def test_synthetic_labels_are_a_function_of_the_inputs() -> None:
    batch = synthetic_batch(TINY, np.random.default_rng(5), 16)
    labels = synthetic_labels(
        TINY,
        batch["mel"].numpy(),
        batch["mel_lengths"].numpy(),
        batch["face_features"].numpy(),
        batch["face_mask"].numpy(),
    )
    assert np.array_equal(labels, batch["labels"].numpy())
    assert len(set(labels.tolist())) > 2


def test_loss_forms() -> None:
    """Eval: mean(CE_fused + w CE_audio); all video dropped: w CE_audio only."""
    config = dataclasses.replace(TINY, dropout=0.0)
    torch.manual_seed(6)
    model = make_model(config).eval()
    batch = synthetic_batch(config, np.random.default_rng(6), 5)
    with torch.no_grad():
        fused, audio = model(
            batch["mel"], batch["face_features"], batch["mel_lengths"], batch["face_mask"]
        )
        y = batch["labels"].numpy()

        def ce(logits: torch.Tensor) -> np.ndarray:
            x = _np(logits)
            log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
            return -log_p[np.arange(len(y)), y]

        w = config.audio_loss_weight
        want = np.mean(ce(fused) + w * ce(audio))
        assert abs(float(av_fbp_loss(model, batch)) - want) < 1e-5
        dropped = dataclasses.replace(config, modality_dropout=1.0)
        model.config = dropped
        model.train()
        for module in model.modules():  # BatchNorm in eval: only the loss's randomness changes
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        assert abs(float(av_fbp_loss(model, batch)) - np.mean(w * ce(audio))) < 1e-5


def test_export_graphs_reproduce_the_training_heads() -> None:
    torch.manual_seed(7)
    model = make_model(TINY).eval()
    build = export_build(model, TINY)
    assert build.labels == AFEW_LABELS and build.config["pipeline"] == "av-fbp"
    assert build.config["mel"]["n_mels"] == TINY.n_mels
    graphs = {g.spec.name: g for g in build.graphs}
    feeds = graphs["audio_video"].examples
    assert [f["mel"].shape[-1] for f in feeds] == [198, 48, 798]
    assert [f["face_features"].shape[1] for f in feeds] == [4, 1, 16]
    assert graphs["audio_video"].spec.dims["frames"].min == 48
    with torch.no_grad():
        for f in feeds:
            mel, faces = torch.from_numpy(f["mel"]), torch.from_numpy(f["face_features"])
            fused, audio = model(mel, faces)
            torch.testing.assert_close(graphs["audio_video"].module(mel, faces), fused)
            torch.testing.assert_close(graphs["audio_only"].module(mel), audio)


@pytest.mark.parametrize("seconds", [0.5, 2.0])
def test_mel_frames_matches_the_shared_front_end(seconds: float) -> None:
    mel = MelConfig(n_mels=16)
    wave = np.random.default_rng(8).normal(size=round(seconds * mel.sample_rate))
    assert log_mel(wave.astype(np.float32), mel.sample_rate, mel).shape == (
        16,
        mel_frames(seconds, mel),
    )
