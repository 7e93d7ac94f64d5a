"""Every family's tiny bundle (tests/support/bundles.py) has a pipeline and loads."""

from __future__ import annotations

import numpy as np

from edge_sdk.pipelines.registry import pipelines
from tests.support.bundles import clip, voiced


def test_every_tiny_bundle_has_a_registered_pipeline(tiny_family_bundles) -> None:
    registered = pipelines()
    for family, bundle in tiny_family_bundles.items():
        assert bundle.manifest.config["pipeline"] in registered, family


def test_clip_and_voice_generators() -> None:
    frames = clip()
    assert frames.shape == (6, 200, 200, 3) and frames.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    assert voiced(0.5, 8000, 2).shape == (4000, 2)
