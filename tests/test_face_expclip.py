"""Exp-CLIP maths against independent numpy references, and the frozen-tower contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_sdk.errors import WeightsError
from edge_sdk.models import clip_towers
from edge_sdk.models.face_expclip.family import (
    CONFIGS,
    export_build,
    info_nce,
    loss,
    make_model,
    prompts_for,
    recompute_prototypes,
    synthetic_batch,
)

TINY = CONFIGS["tiny"]


def _numpy_info_nce(image: np.ndarray, teacher: np.ndarray, tau: float) -> float:
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    teacher = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
    total = 0.0
    for i in range(image.shape[0]):
        sims = np.array([image[i] @ teacher[j] for j in range(teacher.shape[0])]) / tau
        total += -(sims[i] - np.log(np.sum(np.exp(sims))))
    return total / image.shape[0]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(TINY).eval()


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_info_nce_matches_numpy(tau: float) -> None:
    rng = np.random.default_rng(0)
    image, teacher = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    got = info_nce(torch.from_numpy(image), torch.from_numpy(teacher), tau)
    assert float(got) == pytest.approx(_numpy_info_nce(image, teacher, tau), rel=1e-9)


def test_info_nce_prefers_matched_pairs() -> None:
    rng = np.random.default_rng(1)
    teacher = torch.from_numpy(rng.normal(size=(6, 8)))
    matched = info_nce(teacher.clone(), teacher, 0.07)
    shuffled = info_nce(teacher.roll(1, dims=0), teacher, 0.07)
    assert float(matched) < 0.1 < 1.0 < float(shuffled)


def test_frozen_towers_get_no_gradient(model) -> None:
    model.train()
    batch = synthetic_batch(TINY, np.random.default_rng(0), 4)
    model.zero_grad()
    loss(model, batch).backward()
    for tower in (model.image_tower, model.text_tower):
        assert not tower.training
        for parameter in tower.parameters():
            assert not parameter.requires_grad and parameter.grad is None
    assert model.projection.weight.grad is not None
    assert float(model.projection.weight.grad.abs().sum()) > 0
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["projection.weight"]
    model.eval()


def test_zero_shot_graph_is_cosine_to_prompt_prototypes(model) -> None:
    build = export_build(model, TINY)
    (graph,) = build.graphs
    assert build.labels == TINY.vocabulary and build.config["pipeline"] == "face-expclip"
    assert build.preprocessing["face"].mean == clip_towers.CLIP_MEAN
    weight = model.projection.weight.detach().numpy().astype(np.float64)
    prompts = prompts_for(TINY, TINY.vocabulary)
    assert prompts[3] == "a photo of a face with an expression of happiness."
    text = clip_towers.encode_prompts(model.text_tower, model.tokenizer, prompts).numpy()
    prototypes = _normalise(text @ weight.T)
    np.testing.assert_allclose(graph.module.prototypes.numpy(), prototypes, atol=1e-5)
    image = graph.examples[2]["image"]
    with torch.no_grad():
        e_image = model.image_tower(pixel_values=torch.from_numpy(image)).image_embeds.numpy()
        logits, embedding = graph.module(torch.from_numpy(image))
    want_embedding = _normalise(e_image @ weight.T)
    np.testing.assert_allclose(embedding.numpy(), want_embedding, atol=1e-5)
    np.testing.assert_allclose(
        logits.numpy(), TINY.logit_scale * want_embedding @ prototypes.T, atol=1e-3
    )
    assert logits.shape == (5, 7)


def test_changing_the_vocabulary_changes_the_prototypes(model) -> None:
    words = ("calm", "excited", "bored")
    prototypes = recompute_prototypes(model, words)
    assert prototypes.shape == (3, TINY.proj_dim)
    np.testing.assert_allclose(prototypes.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    assert float((prototypes[0] - prototypes[1]).abs().max()) > 1e-4
    build = export_build(model, dataclasses.replace(TINY, vocabulary=words))
    (graph,) = build.graphs
    assert build.labels == words
    np.testing.assert_allclose(graph.module.prototypes.numpy(), prototypes.numpy(), atol=1e-6)
    logits, _ = graph.module(torch.from_numpy(graph.examples[0]["image"]))
    assert logits.shape == (1, 3)


def test_char_tokenizer_frames_prompts_with_bos_and_eos() -> None:
    tokenizer = clip_towers.PromptTokenizer.for_fields(TINY)
    ids, mask = tokenizer(["a face", "Fear."])
    assert ids.shape == mask.shape == (2, 8)
    assert ids[:, 0].tolist() == [1, 1]
    eos = TINY.text_vocab - 1
    assert ids[0, -1] == eos and ids[1, 6] == eos and ids[1, 7] == 0
    assert mask[1].tolist() == [1] * 7 + [0]
    assert int(ids.max()) == eos  # CLIP's legacy pooling takes argmax(ids) as the eos position


def test_checkpoint_folder_loads_and_mismatch_is_refused(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    vision = clip_towers.vision_config(TINY)
    text = clip_towers.text_config(TINY)
    torch.manual_seed(3)
    saved = CLIPModel(
        CLIPConfig(
            vision_config=vision.to_dict(),
            text_config=text.to_dict(),
            projection_dim=TINY.clip_embed_dim,
        )
    )
    saved.save_pretrained(tmp_path, safe_serialization=True)
    fields = clip_towers.tower_fields_from_checkpoint(tmp_path)
    config = dataclasses.replace(TINY, **fields)
    assert dataclasses.replace(config, clip_checkpoint="") == TINY
    tower = clip_towers.load_vision_tower(config)
    pixels = torch.zeros(1, 3, TINY.clip_image_size, TINY.clip_image_size)
    with torch.no_grad():
        got = tower(pixel_values=pixels).image_embeds
        want = saved.get_image_features(pixel_values=pixels)
    want = getattr(want, "pooler_output", want)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    assert clip_towers.clip_weight_sources(config)
    with pytest.raises(WeightsError, match="clip_hidden"):
        clip_towers.load_vision_tower(dataclasses.replace(config, clip_hidden=64))
