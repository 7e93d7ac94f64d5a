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

_DEFINING_MODULES = ("edge_sdk.models.face_fer7",)


@dataclass(frozen=True)
class BuiltGraph:
    """One graph ready for export: spec, module with weights, inputs to trace and check it."""

    spec: GraphSpec
    module: Any
    examples: tuple[dict[str, np.ndarray], ...]


@dataclass(frozen=True)
class FamilyBuild:
    """Everything an exporter needs for one bundle of a family."""

    variant: str
    labels: tuple[str, ...]
    graphs: tuple[BuiltGraph, ...]
    preprocessing: dict[str, Preprocessing]
    weights: tuple[WeightSource, ...]
    parity_tolerance: float
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """A registered family: its task, and a builder taking an optional checkpoint."""

    name: str
    task: str
    description: str
    build: Callable[[Path | None], FamilyBuild]


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family (called at import time of its defining module)."""
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def families() -> tuple[Family, ...]:
    """Every registered family, sorted by name."""
    for module in _DEFINING_MODULES:
        importlib.import_module(module)
    return tuple(_FAMILIES[n] for n in sorted(_FAMILIES))


def get_family(name: str) -> Family:
    """Look a family up by name; unknown names list the known ones."""
    known = {f.name: f for f in families()}
    if name not in known:
        raise EdgeSDKError(f"unknown family {name!r}; known: {sorted(known)}")
    return known[name]
