"""Generic training loop and checkpoints for families that carry a TrainingRecipe.

Checkpoints are safetensors files (no pickle) whose metadata names the family and holds
the config as JSON, so ``edge-sdk export FAMILY --checkpoint CKPT`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import WeightsError
from edge_sdk.models.families import Family, FamilyBuild, TrainingRecipe


def resolve_config(recipe: TrainingRecipe, config: str | Path | Any) -> Any:
    """A config from a size name ("tiny", "edge"), a JSON file, or a config object."""
    if isinstance(config, recipe.config_type):
        return config
    if isinstance(config, str) and config in recipe.configs:
        return recipe.configs[config]
    path = Path(config)
    if path.is_file():
        return config_from_json(recipe, path.read_text(encoding="utf-8"))
    raise WeightsError(f"unknown config {config!r}; sizes: {sorted(recipe.configs)} or a JSON file")


def config_to_json(config: Any) -> str:
    """Config dataclass -> JSON text."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(recipe: TrainingRecipe, text: str) -> Any:
    """JSON text -> config dataclass; lists become tuples where the default is a tuple."""
    try:
        data = json.loads(text)
        defaults = {f.name: f for f in dataclasses.fields(recipe.config_type)}
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise WeightsError(f"config has unknown fields {unknown}")
        return recipe.config_type(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        )
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"config is not valid for {recipe.config_type.__name__}: {exc}") from exc


def save_checkpoint(path: str | Path, family: str, model: Any, config: Any) -> Path:
    """Write the model's state dict and its config as a safetensors checkpoint."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"family": family, "config": config_to_json(config)})
    return path


def load_checkpoint(path: str | Path, family: Family) -> tuple[Any, Any]:
    """(model, config) from a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    recipe = _recipe(family)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    if metadata.get("family") != family.name:
        raise WeightsError(f"{path} is a {metadata.get('family')!r} checkpoint, not {family.name}")
    config = config_from_json(recipe, metadata.get("config", "{}"))
    model = recipe.make_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit {family.name} {config}: {exc}") from exc
    return model.eval(), config


def _recipe(family: Family) -> TrainingRecipe:
    if family.recipe is None:
        raise WeightsError(f"family {family.name} is not trained with edge-sdk's own code")
    return family.recipe


def synthetic_batches(
    recipe: TrainingRecipe, config: Any, seed: int, batch_size: int, count: int
) -> list[dict[str, Any]]:
    """A fixed list of generated batches (the same every epoch)."""
    rng = np.random.default_rng(seed)
    return [recipe.synthetic_batch(config, rng, batch_size) for _ in range(count)]


def train(
    family: Family,
    config: Any,
    batches: Iterable[dict[str, Any]],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[Any, list[float]]:
    """Train a fresh model with Adam over ``batches`` for ``epochs``; returns (model, losses)."""
    import torch

    recipe = _recipe(family)
    torch.manual_seed(seed)
    model = recipe.make_model(config)
    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    batches = list(batches)
    losses: list[float] = []
    for _ in range(epochs):
        for batch in batches:
            optimiser.zero_grad()
            loss = recipe.loss(model, batch)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), losses[-1])
    return model.eval(), losses


def build_from_checkpoint(
    family: Family, checkpoint: Path | None, config: Any = "edge"
) -> FamilyBuild:
    """FamilyBuild from a checkpoint, or from an untrained model of ``config`` when None
    (marked ``weights_state="untrained"``, so no bundle hides it)."""
    import torch

    recipe = _recipe(family)
    if checkpoint is None:
        resolved = resolve_config(recipe, config)
        torch.manual_seed(0)
        model = recipe.make_model(resolved).eval()
        return dataclasses.replace(recipe.export_build(model, resolved), weights_state="untrained")
    model, resolved = load_checkpoint(checkpoint, family)
    return recipe.export_build(model, resolved)
