"""Generic training loop and checkpoints for families that carry a TrainingRecipe.

Checkpoints are safetensors files (no pickle) whose metadata names the family and holds
the config as JSON, so ``edge-sdk export FAMILY --checkpoint CKPT`` needs nothing else.
Training on data sets (validation, best checkpoint, resume, provenance) is
:mod:`edge_sdk.training`; this module keeps the checkpoint format and the synthetic loop.
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


TRAINING_METADATA_KEY = "training"  # JSON provenance of a data set run (edge_sdk.training)


def save_checkpoint(
    path: str | Path,
    family: str,
    model: Any,
    config: Any,
    *,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write the model's state dict and its config as a safetensors checkpoint.

    ``training`` (provenance of a data set run) goes to the ``"training"`` metadata entry as
    JSON, for export to copy into the manifest.
    """
    return write_state(path, family, model.state_dict(), config_to_json(config), training)


def write_state(
    path: str | Path,
    family: str,
    state: dict[str, Any],
    config_json: str,
    training: dict[str, Any] | None = None,
) -> Path:
    """The checkpoint format itself: tensors + ``family``/``config`` (+ ``training``) metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {"family": family, "config": config_json}
    if training is not None:
        metadata[TRAINING_METADATA_KEY] = json.dumps(training, sort_keys=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def training_metadata(path: str | Path) -> str | None:
    """The checkpoint's ``"training"`` provenance JSON text (None if absent), tensors unread."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(TRAINING_METADATA_KEY)
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc


def read_state(path: str | Path) -> tuple[dict[str, str], dict[str, Any]]:
    """(metadata, tensors) of a safetensors file; WeightsError when it is not one."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return metadata, load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc


def load_checkpoint(path: str | Path, family: Family) -> tuple[Any, Any]:
    """(model, config) from a checkpoint written by :func:`save_checkpoint`."""
    recipe = _recipe(family)
    metadata, state = read_state(path)
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


def make_optimizer(recipe: TrainingRecipe | None, parameters: list[Any], lr: float) -> Any:
    """The recipe's optimiser over ``parameters`` at ``lr``; Adam when it names none (or for
    families without a recipe)."""
    import torch

    if recipe is not None and recipe.optimizer is not None:
        return recipe.optimizer(parameters, lr)
    return torch.optim.Adam(parameters, lr=lr)


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
    """Train a fresh model over ``batches`` for ``epochs``; returns (model, losses).

    The recipe's ``pretrain`` stage runs first; the optimiser is the recipe's (Adam when it
    names none, :func:`make_optimizer`).
    """
    import torch

    recipe = _recipe(family)
    torch.manual_seed(seed)
    model = recipe.make_model(config)
    model.train()
    batches = list(batches)
    if recipe.pretrain is not None:  # a stage before the main one; it freezes what it fits
        recipe.pretrain(model, batches)
    optimiser = make_optimizer(recipe, [p for p in model.parameters() if p.requires_grad], lr)
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
