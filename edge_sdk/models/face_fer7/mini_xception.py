"""mini-XCEPTION (Arriaga et al., 2017), the FER2013 expression classifier, in PyTorch.

Rebuilt layer for layer from the Keras model so that the published weights load exactly:
two plain 3x3 convolutions, residual blocks of two depthwise-separable convolutions plus a
strided 1x1 shortcut, a 3x3 convolution to class maps, global average pooling and softmax.
Keras pads "same" asymmetrically (extra row/column at the bottom/right); the max-pool
padding replicates edges instead of using -inf, which gives the same maximum (the padded
value already lies in the window) and keeps INT8 calibration ranges finite.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F  # noqa: N812 - conventional alias
from torch import nn

from edge_sdk.models.registry import register_architecture

BN_EPS = 1e-3  # Keras BatchNormalization default


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow "same" padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """F.pad argument (left, right, top, bottom) for a square ``size`` input."""
    before, after = _same_pad(size, kernel, stride)
    return before, after, before, after


class _SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, no bias (Keras SeparableConv2D, padding same)."""

    def __init__(self, channels_in: int, channels_out: int, size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels_in, channels_in, 3, groups=channels_in, bias=False)
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1, bias=False)
        self.padding = _pad_same(size, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(F.pad(x, self.padding)))


class _ResidualBlock(nn.Module):
    """Two separable convs + "same" 3x3/2 max-pool, added to a strided 1x1 shortcut.

    Paddings depend on the spatial size, fixed at construction so that the exported graph
    holds constants rather than shape arithmetic.
    """

    def __init__(self, channels_in: int, channels_out: int, size: int) -> None:
        super().__init__()
        self.shortcut_padding = _pad_same(size, 1, 2)
        self.pool_padding = _pad_same(size, 3, 2)
        self.shortcut = nn.Conv2d(channels_in, channels_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(channels_out, eps=BN_EPS)
        self.sep1 = _SeparableConv(channels_in, channels_out, size)
        self.bn1 = nn.BatchNorm2d(channels_out, eps=BN_EPS)
        self.sep2 = _SeparableConv(channels_out, channels_out, size)
        self.bn2 = nn.BatchNorm2d(channels_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(F.pad(x, self.shortcut_padding)))
        y = self.bn2(self.sep2(torch.relu(self.bn1(self.sep1(x)))))
        y = F.max_pool2d(F.pad(y, self.pool_padding, mode="replicate"), 3, 2)
        return y + residual


@register_architecture("mini_xception")
class MiniXception(nn.Module):
    """Grayscale face crop (N, 1, S, S) in [-1, 1] -> class probabilities (N, classes).

    ``input_size`` S is fixed per model (64 for the FER2013 weights).
    """

    def __init__(
        self,
        num_classes: int = 7,
        stem_channels: int = 8,
        block_channels: tuple[int, ...] = (16, 32, 64, 128),
        in_channels: int = 1,
        input_size: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels, eps=BN_EPS)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels, eps=BN_EPS)
        widths = (stem_channels, *block_channels)
        size = input_size - 4  # two valid 3x3 convolutions
        blocks = []
        for channels_in, channels_out in itertools.pairwise(widths):
            blocks.append(_ResidualBlock(channels_in, channels_out, size))
            size = -(-size // 2)
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(widths[-1], num_classes, 3)
        self.classifier_padding = _pad_same(size, 3, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax class scores (used by training and calibration checks)."""
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.classifier(F.pad(x, self.classifier_padding)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)
