"""Checks every family trained with edge-sdk's own code gets for free (registry-parametrised).

A new family registered with a TrainingRecipe is picked up here without editing this file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.bundle import ModelBundle
from edge_sdk.models.families import families
from edge_sdk.models.training import (
    load_checkpoint,
    save_checkpoint,
    synthetic_batches,
    train,
)

pytestmark = pytest.mark.slow  # training, calibration, a real server or fuzzing

TRAINABLE = [f for f in families() if f.recipe is not None]
IDS = [f.name for f in TRAINABLE]


def _finite(value) -> bool:
    import torch

    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


def test_registry_lists_the_families() -> None:
    names = {f.name for f in families()}
    assert "face-fer7" in names
    for family in TRAINABLE:
        assert {"tiny", "edge"} <= set(family.recipe.configs)


@pytest.mark.parametrize("family", TRAINABLE, ids=IDS)
@pytest.mark.parametrize("size", ["tiny", "edge"])
def test_loss_is_finite_for_each_size(family, size: str) -> None:
    import torch

    recipe = family.recipe
    config = recipe.configs[size]
    torch.manual_seed(0)
    model = recipe.make_model(config).train()
    batch = recipe.synthetic_batch(config, np.random.default_rng(0), 2)
    loss = recipe.loss(model, batch)
    assert loss.ndim == 0 and math.isfinite(float(loss))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(_finite(g) for g in grads)


@pytest.mark.parametrize("family", TRAINABLE, ids=IDS)
def test_a_few_steps_lower_the_training_loss(family) -> None:
    recipe = family.recipe
    config = recipe.configs["tiny"]
    batches = synthetic_batches(recipe, config, seed=1, batch_size=8, count=4)
    import torch

    torch.manual_seed(0)
    before = float(np.mean([float(recipe.loss(recipe.make_model(config).eval(), b).detach())
                            for b in batches]))
    model, losses = train(family, config, batches, epochs=6, lr=3e-3, seed=0)
    with torch.no_grad():
        after = float(np.mean([float(recipe.loss(model, b)) for b in batches]))
    assert len(losses) == 24
    assert after < before, (before, after)


@pytest.mark.parametrize("family", TRAINABLE, ids=IDS)
def test_export_parity_and_bundle(family, tmp_path: Path, device) -> None:
    """Train briefly, checkpoint, export through the CLI path, compare torch and ORT."""
    from export.family_export import export_family
    from runtimes.selection import open_graph

    recipe = family.recipe
    config = recipe.configs["tiny"]
    batches = synthetic_batches(recipe, config, seed=2, batch_size=4, count=2)
    model, _ = train(family, config, batches, epochs=1, seed=0)
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", family.name, model, config)
    reloaded, reloaded_config = load_checkpoint(checkpoint, family)
    assert reloaded_config == config

    bundle = export_family(family.name, tmp_path / "bundle", checkpoint)
    assert isinstance(ModelBundle.load(bundle.root), ModelBundle)
    assert bundle.manifest.family == family.name
    ratios = {k: v for k, v in bundle.manifest.parity.items() if k.endswith(".ratio")}
    assert ratios and all(v <= 1.0 for v in ratios.values()), bundle.manifest.parity
    build = recipe.export_build(reloaded, config)
    for graph in build.graphs:
        assert len(graph.examples) >= 2, "parity needs several dynamic sizes"
        ort = open_graph(bundle, graph.spec.name, device, backend="ort-cpu")
        ref = open_graph(bundle, graph.spec.name, device, backend="torch")
        for feeds in graph.examples:
            got, want = ort.run(feeds), ref.run(feeds)
            for name, value in want.items():
                assert np.isfinite(value).all()
                assert np.max(np.abs(got[name] - value)) <= 1e-4, (graph.spec.name, name)
                if "logits" in name:
                    assert (got[name].argmax(-1) == value.argmax(-1)).all()
