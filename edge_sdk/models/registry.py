"""Architecture registry: a manifest's ``architecture`` name -> a PyTorch module builder.

The PyTorch reference backend and the exporter rebuild a graph from the name and config
recorded in the manifest, never from a file name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edge_sdk.errors import BundleError

# Networks defined outside a family module (face-fer7's MTCNN, whose graphs every face
# pipeline's detector runs, and mini-XCEPTION); family modules are found by name.
_DEFINING_MODULES = ("edge_sdk.models.face_fer7.mtcnn", "edge_sdk.models.face_fer7.mini_xception")
_ARCHITECTURES: dict[str, Callable[..., Any]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class/function decorator: ``builder(**config)`` returns an ``nn.Module``."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ARCHITECTURES and _ARCHITECTURES[name] is not builder:
            raise ValueError(f"architecture {name!r} registered twice")
        _ARCHITECTURES[name] = builder
        return builder

    return decorate


def _load_definitions() -> None:
    from edge_sdk.models.families import load_family_modules

    for module in _DEFINING_MODULES:
        importlib.import_module(module)
    load_family_modules()


def architectures() -> tuple[str, ...]:
    """Names of every registered architecture."""
    _load_definitions()
    return tuple(sorted(_ARCHITECTURES))


def build_module(name: str, config: dict[str, Any] | None = None) -> Any:
    """Build the (untrained) PyTorch module registered as ``name`` with ``config``."""
    _load_definitions()
    if name not in _ARCHITECTURES:
        raise BundleError(f"unknown architecture {name!r}; known: {sorted(_ARCHITECTURES)}")
    return _ARCHITECTURES[name](**(config or {}))
