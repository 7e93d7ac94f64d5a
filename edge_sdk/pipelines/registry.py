"""Pipeline registry: a bundle's ``config["pipeline"]`` -> the class that runs it.

Each pipeline module registers its classes with :func:`register_pipeline`; the Recognizer
looks bundles up here and never branches on family or pipeline names. Every pipeline class
is built as ``cls(bundle, device, backend=..., precision=...)`` (sessions opened once, at
start-up) and declares the ``modality`` of ``Recognizer.predict`` it serves: the
:class:`~edge_sdk.pipelines.base.Pipeline` protocol, which
:class:`~edge_sdk.pipelines.base.GraphPipeline` implements once for every class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError

MODALITIES = ("face", "scene", "audio", "dialog")
_PIPELINES: dict[str, type] = {}
_SKIP = {"__init__", "registry"}


def register_pipeline(name: str) -> Callable[[type], type]:
    """Class decorator: the class runs bundles whose ``config["pipeline"]`` is ``name``."""

    def decorate(cls: type) -> type:
        modality = getattr(cls, "modality", None)
        if modality not in MODALITIES:
            raise ValueError(f"pipeline {name!r}: modality must be one of {MODALITIES}")
        if name in _PIPELINES and _PIPELINES[name] is not cls:
            raise ValueError(f"pipeline {name!r} registered twice")
        _PIPELINES[name] = cls
        return cls

    return decorate


def load_pipeline_modules() -> None:
    """Import every module of this package so each registers its pipelines."""
    for module in sorted(Path(__file__).parent.glob("*.py")):
        if module.stem not in _SKIP:
            importlib.import_module(f"edge_sdk.pipelines.{module.stem}")


def pipelines() -> dict[str, type]:
    """Registered pipeline names -> classes."""
    load_pipeline_modules()
    return dict(_PIPELINES)


def pipeline_class(bundle: ModelBundle) -> Any:
    """The class that runs ``bundle``; a BundleError names the known pipelines otherwise."""
    known = pipelines()
    kind = bundle.manifest.config.get("pipeline")
    if kind not in known:
        raise BundleError(
            f"bundle {bundle.manifest.family} declares pipeline {kind!r}; "
            f"this SDK runs {sorted(known)}"
        )
    return known[kind]
