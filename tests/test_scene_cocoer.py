"""CocoER maths against numpy references; windows; ω pre-training; multi-label variant."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from scipy.special import erf

from edge_sdk.models.scene_cocoer.blocks import CrossLevelAttention, PatchEmbedding
from edge_sdk.models.scene_cocoer.family import (
    CONFIGS,
    EMOTIC_LABELS,
    cocoer_loss,
    export_build,
    level_loss,
    make_model,
    omega_loss,
    pretrain_omega,
    synthetic_batch,
)
from edge_sdk.preprocess.windows import body_box_from_head, scene_windows

TINY = CONFIGS["tiny"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(TINY).eval()


def test_cross_level_attention_matches_numpy() -> None:
    torch.manual_seed(1)
    block = CrossLevelAttention(width=4, ffn_mult=2)
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    rng = np.random.default_rng(0)
    level, context = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    got = block(*(torch.tensor(x, dtype=torch.float32) for x in (level, context)))
    w_h0, w_c, w_h1 = (_np(block.w_query.weight).T, _np(block.w_key.weight).T,
                       _np(block.w_value.weight).T)  # fmt: skip
    first, second = block.ffn[0], block.ffn[2]
    want = []
    for u_h, u_c in zip(level, context, strict=True):
        q, k, v = u_h @ w_h0, u_c @ w_c, u_h @ w_h1
        gamma = _softmax(q @ k.T / np.sqrt(4))
        z_dot = gamma @ v + u_h
        normed = _layer_norm(z_dot, _np(block.norm.weight), _np(block.norm.bias))
        hidden = _gelu(normed @ _np(first.weight).T + _np(first.bias))
        z = hidden @ _np(second.weight).T + _np(second.bias) + z_dot
        want.append(z.mean(axis=0))
    np.testing.assert_allclose(_np(got), np.stack(want), atol=1e-5)


def test_patch_embedding_is_linear_map_of_non_overlapping_patches() -> None:
    torch.manual_seed(2)
    embed = PatchEmbedding(channels=2, patch=2, width=3)
    u = np.random.default_rng(1).normal(size=(1, 2, 4, 6))
    got = _np(embed(torch.tensor(u, dtype=torch.float32)))[0]
    e = _np(embed.proj.weight).reshape(3, -1)  # E_m: (p^2 c) -> d_h, patch values as (c, y, x)
    patches = [u[0, :, y : y + 2, x : x + 2].reshape(-1) for y in (0, 2) for x in (0, 2, 4)]
    want = np.stack(patches) @ e.T + _np(embed.proj.bias)
    assert got.shape == (6, 3)  # N = hw / p^2
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_levels_graph_routes_windows_through_context_attention(model) -> None:
    build = export_build(model, TINY)
    levels = copy.deepcopy(build.graphs[0].module)
    with torch.no_grad():  # sharpen the (near-uniform at init) attention so context matters
        for block in levels.attention.values():
            block.w_query.weight.mul_(30.0)
    rng = np.random.default_rng(3)
    feeds = {m: torch.tensor(rng.normal(size=(2, 3, 32, 32)), dtype=torch.float32)
             for m in ("context", "body", "head")}  # fmt: skip
    with torch.no_grad():
        z_c, z_b, z_h, logits = levels(**feeds)
        other_head = dict(feeds, head=feeds["head"].flip(-1))
        z_c2, z_b2, z_h2, _ = levels(**other_head)
        other_context = dict(feeds, context=feeds["context"].flip(-1))
        _, z_b3, z_h3, _ = levels(**other_context)
    assert z_c.shape == (2, TINY.clip_embed_dim) and logits.shape == (2, 3, 7)
    torch.testing.assert_close(z_c2, z_c, atol=1e-5, rtol=0)  # T_{c,c}: context only
    torch.testing.assert_close(z_b2, z_b, atol=1e-5, rtol=0)
    assert float((z_h2 - z_h).abs().max()) > 1e-4
    assert float((z_b3 - z_b).abs().max()) > 1e-5 and float((z_h3 - z_h).abs().max()) > 1e-5
    head = levels.heads["head"]
    torch.testing.assert_close(logits[:, 2], z_h @ head.predict.weight.T, atol=1e-5, rtol=1e-5)


def test_level_loss_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    logits, target = rng.normal(size=(3, 5)), _softmax(rng.normal(size=(3, 5)))
    got = level_loss(torch.tensor(logits), torch.tensor(target), multi_label=False)
    log_p = np.log(_softmax(logits))
    assert float(got) == pytest.approx(-(target * log_p).sum(axis=1).mean(), rel=1e-9)
    multi = (rng.random((3, 5)) > 0.5).astype(np.float64)
    got = level_loss(torch.tensor(logits), torch.tensor(multi), multi_label=True)
    p = 1.0 / (1.0 + np.exp(-logits))
    want = -(multi * np.log(p) + (1 - multi) * np.log(1 - p)).mean()
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_omega_loss_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    u, omega, text = rng.normal(size=(4, 3)), rng.normal(size=(3, 3)), rng.normal(size=(2, 3))
    literal = np.mean([np.sum((np.repeat((omega.T @ ui)[:, None], 2, 1) - text.T) ** 2) / 2
                       for ui in u])  # fmt: skip
    got = omega_loss(torch.tensor(u), torch.tensor(omega), torch.tensor(text))
    assert float(got) == pytest.approx(literal, rel=1e-9)
    labels = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    weighted = np.mean([
        sum(w * np.sum((omega.T @ ui - t) ** 2) for w, t in zip(row / row.sum(), text, strict=True))
        for ui, row in zip(u, labels, strict=True)
    ])  # fmt: skip
    got = omega_loss(torch.tensor(u), torch.tensor(omega), torch.tensor(text), torch.tensor(labels))
    assert float(got) == pytest.approx(weighted, rel=1e-9)


@pytest.mark.parametrize("with_labels", [True, False])
def test_pretrain_omega_reduces_its_loss_then_freezes(with_labels: bool) -> None:
    torch.manual_seed(0)
    fresh = make_model(TINY)
    batch = synthetic_batch(TINY, np.random.default_rng(6), 16)
    labels = batch["labels"] if with_labels else None
    history = pretrain_omega(fresh, batch["image"], labels, steps=60, lr=2e-2)
    assert history[-1] < 0.5 * history[0]
    assert not fresh.alignment.omega.requires_grad
    assert not torch.equal(fresh.alignment.omega, torch.eye(TINY.clip_embed_dim))
    fresh.train()
    fresh.zero_grad()
    cocoer_loss(fresh, batch).backward()
    assert fresh.alignment.omega.grad is None
    assert all(p.grad is None for p in fresh.alignment.image_tower.parameters())
    assert fresh.alignment.ffn1_out.weight.grad is not None


def test_alignment_graph_gives_pseudo_label_and_z_t(model) -> None:
    alignment = export_build(model, TINY).graphs[1].module
    image = torch.tensor(np.random.default_rng(7).normal(size=(3, 3, 32, 32)), dtype=torch.float32)
    with torch.no_grad():
        y_t, z_t = alignment(image)
        u = model.alignment.image_features(image)
    torch.testing.assert_close(y_t.sum(-1), torch.ones(3))
    hidden = alignment.ffn1_hidden[0]
    want_z = _gelu(_np(u) @ _np(alignment.omega) @ _np(hidden.weight).T + _np(hidden.bias))
    np.testing.assert_allclose(_np(z_t), want_z, atol=1e-5)
    want_y = _softmax(want_z @ _np(alignment.ffn1_out.weight).T + _np(alignment.ffn1_out.bias))
    np.testing.assert_allclose(_np(y_t), want_y, atol=1e-5)


def test_multi_label_variant_uses_sigmoid() -> None:
    config = dataclasses.replace(TINY, vocabulary=EMOTIC_LABELS, multi_label=True)
    torch.manual_seed(0)
    emotic = make_model(config)
    batch = synthetic_batch(config, np.random.default_rng(8), 4)
    assert batch["labels"].shape == (4, 26) and batch["labels"].dtype == torch.float32
    assert torch.isfinite(cocoer_loss(emotic, batch))
    build = export_build(emotic.eval(), config)
    assert build.config["activation"] == "sigmoid" and len(build.labels) == 26
    with torch.no_grad():
        y_t, _ = build.graphs[1].module(batch["image"])
    assert y_t.shape == (4, 26) and float(y_t.min()) > 0 and float(y_t.max()) < 1
    assert float((y_t.sum(-1) - 1).abs().max()) > 1e-3  # not a softmax


def test_body_box_from_head_is_documented_expansion_clipped() -> None:
    box = body_box_from_head(np.array([40.0, 20.0, 60.0, 44.0]), (300, 200, 3))
    # width 20 -> 60 centred on x=50; height 24 -> from 20 - 6 to 20 + 168
    np.testing.assert_allclose(box, [20.0, 14.0, 80.0, 188.0])
    clipped = body_box_from_head(np.array([0.0, 5.0, 30.0, 45.0]), (100, 80, 3))
    np.testing.assert_allclose(clipped, [0.0, 0.0, 60.0, 100.0])


def test_scene_windows_crop_the_three_boxes() -> None:
    from edge_sdk.models.scene_cocoer.family import windows_preprocessing

    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[:, :, 2] = 255  # blue background
    image[10:110, 40:100] = (0, 255, 0)  # green body
    image[20:40, 60:80] = (255, 0, 0)  # red head
    prep = dataclasses.replace(windows_preprocessing(TINY), mean=(0.0,), std=(1.0,))
    windows = scene_windows(image, np.array([60, 20, 80, 40]), np.array([40, 10, 100, 110]), prep)
    assert {k: v.shape for k, v in windows.items()} == {
        m: (1, 3, 32, 32) for m in ("context", "body", "head")
    }
    np.testing.assert_allclose(windows["head"][0, :, 2:-2, 2:-2].mean(axis=(1, 2)), [1, 0, 0])
    body = windows["body"][0]
    assert body[1, 0:2].min() == 1.0 and body[0, 4:9, 12:20].min() == 1.0  # red head: y 3-10
    assert body[2].max() == 0.0  # nothing of the background inside the body box
    context = windows["context"][0]
    assert context[2, :, :2].min() == 1.0 and context[1, 16, 16] == 1.0
    expanded = scene_windows(image, np.array([60, 20, 80, 40]), None, prep)
    assert expanded["body"].shape == (1, 3, 32, 32)
    assert not np.array_equal(expanded["body"], windows["body"])


def test_training_pretrains_omega_then_keeps_it_frozen_in_the_main_stage() -> None:
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import synthetic_batches, train

    family = get_family("scene-cocoer")
    batches = synthetic_batches(family.recipe, TINY, seed=3, batch_size=8, count=2)
    seen: list[torch.Tensor] = []
    holder: dict[str, torch.nn.Module] = {}
    make = family.recipe.make_model

    def remember(config):  # keep a handle on the model train() builds
        holder["model"] = make(config)
        return holder["model"]

    recipe = dataclasses.replace(family.recipe, make_model=remember)
    trained, _ = train(
        dataclasses.replace(family, recipe=recipe),
        TINY,
        batches,
        epochs=2,
        on_step=lambda step, loss: seen.append(holder["model"].alignment.omega.detach().clone()),
    )
    omega = trained.alignment.omega
    assert not torch.allclose(omega, torch.eye(TINY.clip_embed_dim), atol=1e-3)  # pre-trained
    assert not omega.requires_grad
    assert all(torch.equal(o, omega) for o in seen)  # unchanged by every main-stage step
    before = trained.alignment.ffn1_out.weight.detach().clone()
    assert not torch.equal(before, make(TINY).alignment.ffn1_out.weight)  # FFN1 did train


def test_pseudo_label_depends_on_the_prompt_embeddings_after_pretraining() -> None:
    from edge_sdk.models.scene_cocoer.losses import pretrain_stage

    batches = [synthetic_batch(TINY, np.random.default_rng(s), 8) for s in (1, 2)]
    image = batches[0]["image"]
    y = []
    for seed in (0, 1):  # the same model, two different sets of prompt embeddings
        torch.manual_seed(0)
        fresh = make_model(TINY)
        if seed:
            other = torch.randn(fresh.text_embeds.shape, generator=torch.Generator().manual_seed(9))
            fresh.text_embeds.copy_(torch.nn.functional.normalize(other, dim=-1))
        pretrain_stage(fresh, batches)
        with torch.no_grad():
            y.append(fresh.alignment(image)[0])
    assert not torch.allclose(y[0], y[1], atol=1e-4)
