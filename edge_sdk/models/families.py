"""Family registry: a family name -> how to build its graphs, weights and preprocessing.

A family is what users name on the command line (``edge-sdk export face-fer7``). Its
builder returns PyTorch modules with weights loaded, their graph specs and example
inputs; :mod:`export` turns that into an ONNX bundle without knowing the family.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import GraphSpec, Preprocessing, WeightSource

FAMILY_MODULE_PREFIX = "family_"  # edge_sdk/models/family_*.py register one family each


@dataclass(frozen=True)
class BuiltGraph:
    """One graph ready for export: spec, module with weights, inputs to trace and check it."""

    spec: GraphSpec
    module: Any
    examples: tuple[dict[str, np.ndarray], ...]


# Where a bundle's weights came from (manifest ``provenance.weights_state``): trained with
# edge-sdk's code (a checkpoint or a model handed to the exporter), a published pretrained
# model, or random initialisation (for size, latency and parity work only).
WEIGHTS_STATES = ("trained", "pretrained", "untrained")


@dataclass(frozen=True)
class FamilyBuild:
    """Everything an exporter needs for one bundle of a family."""

    variant: str
    labels: tuple[str, ...]
    graphs: tuple[BuiltGraph, ...]
    preprocessing: dict[str, Preprocessing]
    weights: tuple[WeightSource, ...]
    config: dict[str, Any] = field(default_factory=dict)
    weights_state: str = "trained"  # one of WEIGHTS_STATES


@dataclass(frozen=True)
class TrainingRecipe:
    """How a family is built, trained and exported from its own PyTorch code.

    Attributes:
        configs: named sizes, at least ``"tiny"`` (tests) and ``"edge"`` (deployment);
            each a frozen dataclass whose fields are JSON values.
        config_type: the config dataclass, to rebuild a config from JSON.
        make_model: config -> the whole training model (``nn.Module``).
        synthetic_batch: (config, numpy Generator, batch size) -> a dict of tensors with
            learnable structure (labels depend on inputs), so a few steps lower the loss.
        loss: (model, batch) -> scalar tensor, the family's full training objective.
        export_build: (trained model, config) -> FamilyBuild: the inference graphs as
            registered architectures, with example inputs at several dynamic sizes.
        calibration_feeds: optional (numpy batch, run) -> {graph: batched feeds}, for
            families whose graphs do not take ``synthetic_batch`` keys directly; ``run(graph,
            feeds)`` runs an FP32 graph of the bundle (to feed a graph chained after it).
    """

    configs: dict[str, Any]
    config_type: type
    make_model: Callable[[Any], Any]
    synthetic_batch: Callable[[Any, np.random.Generator, int], dict[str, Any]]
    loss: Callable[[Any, dict[str, Any]], Any]
    export_build: Callable[[Any, Any], FamilyBuild]
    calibration_feeds: (
        Callable[
            [dict[str, np.ndarray], Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]],
            dict[str, dict[str, np.ndarray]],
        ]
        | None
    ) = None


@dataclass(frozen=True)
class Family:
    """A registered family: its task, and a builder taking an optional checkpoint.

    Families that import third-party weights give ``build(checkpoint)``. Families trained
    with our own code give a :class:`TrainingRecipe` instead; their checkpoints are
    safetensors files written by :func:`edge_sdk.models.training.save_checkpoint`.
    """

    name: str
    task: str
    description: str
    build: Callable[[Path | None], FamilyBuild] | None = None
    recipe: TrainingRecipe | None = None

    def __post_init__(self) -> None:
        if (self.build is None) == (self.recipe is None):
            raise ValueError(f"family {self.name}: give exactly one of build or recipe")


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family (called at import time of its defining module)."""
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def load_family_modules() -> None:
    """Import every ``edge_sdk/models/family_*.py``; adding a family touches no list."""
    package = Path(__file__).parent
    for module in sorted(package.glob(f"{FAMILY_MODULE_PREFIX}*.py")):
        importlib.import_module(f"edge_sdk.models.{module.stem}")


def families() -> tuple[Family, ...]:
    """Every registered family, sorted by name."""
    load_family_modules()
    return tuple(_FAMILIES[n] for n in sorted(_FAMILIES))


def get_family(name: str) -> Family:
    """Look a family up by name; unknown names list the known ones.

    The family's own module (``family_<name>.py``) is imported first: looking one family
    up, e.g. to refuse an option it does not take, must not import every other family's
    PyTorch code (seconds on a small device).
    """
    own = f"{FAMILY_MODULE_PREFIX}{name.replace('-', '_')}"
    if own.isidentifier() and (Path(__file__).parent / f"{own}.py").is_file():
        importlib.import_module(f"edge_sdk.models.{own}")
    if name in _FAMILIES:
        return _FAMILIES[name]
    known = {f.name: f for f in families()}
    if name not in known:
        raise EdgeSDKError(f"unknown family {name!r}; known: {sorted(known)}")
    return known[name]
