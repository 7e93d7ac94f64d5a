"""benchmarks/model_sizes.py: parameter and FLOP counting against hand-computed figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "model_sizes.py"


def _load_script():
    """benchmarks/ is a script folder, not a package: load the file itself."""
    spec = importlib.util.spec_from_file_location("model_sizes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sizes = _load_script()

# Conv(3 -> 8, 3x3, padding 1) on 3x10x12, flatten, Linear(8*10*12 -> 5).
C_IN, C_OUT, K, H, W, CLASSES = 3, 8, 3, 10, 12, 5


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(C_IN, C_OUT, K, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(C_OUT * H * W, CLASSES),
    )


def test_count_parameters_matches_hand_count() -> None:
    conv = C_OUT * C_IN * K * K + C_OUT  # 216 weights + 8 biases
    linear = C_OUT * H * W * CLASSES + CLASSES  # 4800 weights + 5 biases
    assert sizes.count_parameters(_model()) == conv + linear == 5029


def test_count_parameters_counts_tied_weights_once_and_skips_buffers() -> None:
    shared = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(shared, nn.BatchNorm1d(4), shared)
    assert sizes.count_parameters(model) == 16 + 8  # shared weight once; BN affine, no stats


@pytest.mark.parametrize("batch", [1, 3])
def test_count_flops_is_two_macs_per_matmul_and_conv(batch: int) -> None:
    conv_macs = (C_OUT * H * W) * (C_IN * K * K)  # one MAC per weight per output pixel
    linear_macs = (C_OUT * H * W) * CLASSES
    expected = 2 * batch * (conv_macs + linear_macs)  # ReLU and biases count nothing
    x = torch.zeros(batch, C_IN, H, W)
    assert sizes.count_flops(_model(), (x,)) == expected == batch * 2 * (25920 + 4800)


def test_one_sample_cuts_dynamic_leading_dims_only() -> None:
    from edge_sdk.manifest import DimRange, GraphSpec, TensorSpec
    from edge_sdk.models.families import BuiltGraph

    spec = GraphSpec(
        name="g",
        architecture="a",
        inputs=(
            TensorSpec("x", "float32", ("batch", 2)),
            TensorSpec("y", "float32", (1, "n")),
        ),
        outputs=(TensorSpec("z", "float32", ("batch",)),),
        dims={"batch": DimRange(1, 1, 8), "n": DimRange(1, 4, 8)},
    )
    example = {"x": np.zeros((3, 2), np.float32), "y": np.zeros((1, 5), np.float32)}
    feeds = sizes.one_sample(BuiltGraph(spec, None, (example,)))
    assert feeds["x"].shape == (1, 2)
    assert feeds["y"].shape == (1, 5)
    assert sizes.describe_inputs(feeds) == "x 1x2, y 1x5"
