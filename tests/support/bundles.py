"""Tiny bundles of every family, trained briefly and exported once per test process, and
generated inputs: a voiced waveform, clips made from the astronaut, WAV bytes.

Shared by many test modules (through these functions and the ``bundles`` fixture in
``conftest.py``), so each bundle is built once however many modules use it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.bundle import ModelBundle
from tests.conftest import ASTRONAUT

FAMILIES = ("face-caf", "face-expclip", "scene-cocoer", "av-fbp", "dialog-m2fnet")
# av-fbp's per-frame face features come from face-caf's encoder: the widths must agree.
CONFIG_CHANGES = {"av-fbp": {"face_dim": 32}}
_LOCK = threading.Lock()
_CACHE: dict[str, ModelBundle] = {}


def build_tiny(family: str, out: Path) -> ModelBundle:
    """Train ``family``'s tiny config for a few steps and export it through write_bundle."""
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import synthetic_batches, train
    from export.family_export import write_bundle

    spec = get_family(family)
    config = dataclasses.replace(spec.recipe.configs["tiny"], **CONFIG_CHANGES.get(family, {}))
    batches = synthetic_batches(spec.recipe, config, seed=3, batch_size=4, count=2)
    model, _ = train(spec, config, batches, epochs=1, lr=3e-3, seed=0)
    return write_bundle(family, spec.recipe.export_build(model, config), out)


def tiny_bundles() -> dict[str, ModelBundle]:
    """Every family's tiny bundle (built on first use, then cached for the process)."""
    with _LOCK:
        if not _CACHE:
            root = Path(tempfile.mkdtemp(prefix="edge-sdk-tiny-"))
            for family in FAMILIES:
                _CACHE[family] = build_tiny(family, root / family)
        return dict(_CACHE)


def voiced(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A harmonic 'voice' with a gliding pitch plus a little noise, (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = 140.0 + 50.0 * np.sin(2 * np.pi * 0.8 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(h * phase) / h for h in range(1, 10)) * 0.3
    wave = wave + 0.02 * rng.normal(size=t.shape)
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def clip(frames: int = 6, size: int = 200, step: int = 4) -> np.ndarray:
    """(T, size, size, 3) RGB frames: the astronaut's face window drifting across the frame."""
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    return np.stack(
        [image[10 + step * i : 10 + step * i + size, 120 + step * i : 120 + step * i + size]
         for i in range(frames)]
    )
