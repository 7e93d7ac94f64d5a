"""MTCNN's three cascaded networks (Zhang et al., 2016) as PyTorch modules.

Parameter names follow the layout of the widely distributed MTCNN weights (conv1, prelu1,
..., dense6_3) so that those state dicts load without renaming. The detection algorithm
(pyramid, NMS, box regression) lives in :mod:`edge_sdk.pipelines.detector` and is shared by
every backend; these modules are only the networks.

Outputs are named and ordered the same way everywhere: box regression, face probability
and (O-Net only) landmarks. The probability is the softmax's "face" column.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_sdk.models.registry import register_architecture


class SplitPReLU(nn.Module):
    """PReLU exported as ``x + (1 - a) * relu(-x)``: the same function, other ONNX ops.

    ONNX Runtime's CPU PRelu kernel is single-threaded and cannot run in its blocked (NCHWc)
    conv layout, so every PRelu node cost two layout conversions besides itself. Here the
    negation and the slope scaling are BatchNormalization nodes with mean 0, variance 1
    and epsilon 0 (so the scales are exactly -1 and ``1 - a``), which ORT turns into NCHWc
    depthwise convolutions; the Relu fuses into the first and the Add into the second, so
    each PReLU is two passes over the tensor and the whole net stays in the blocked layout.
    For x > 0 the result is x exactly. Measured on the 2-core CPU (one-thread sessions,
    interleaved): against ``(1 - a) * relu(x) + a * x`` (three passes) P-Net at 308x308
    1.13-1.16x, R-Net on 70 crops 1.09-1.13x faster; that form was itself 1.1x faster than
    ``relu(x) - a * relu(-x)`` and ~1.2x than a PRelu node. Eager PyTorch keeps its fused
    PReLU (the reference is not slowed down); the parameter keeps nn.PReLU's name and shape
    (``weight``, one slope per channel), so the distributed state dicts load unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return nn.functional.prelu(x, self.weight)  # eager: torch's fused kernel
        slope = self.weight
        zeros, ones = torch.zeros_like(slope), torch.ones_like(slope)
        below_zero = torch.relu(_channel_scale(x, -ones, zeros, ones))
        return _channel_scale(below_zero, 1 - slope, zeros, ones) + x


def _channel_scale(
    x: torch.Tensor, scale: torch.Tensor, zeros: torch.Tensor, ones: torch.Tensor
) -> torch.Tensor:
    """``x * scale`` per channel, written as an exact BatchNormalization (see SplitPReLU)."""
    return nn.functional.batch_norm(x, zeros, ones, scale, zeros, False, 0.0, 0.0)


def face_probability(logits: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``softmax(logits(x))[:, 1]``; exported as ``sigmoid(z1 - z0)`` from one output.

    The two are the same function. The exported form gives ORT one Conv (or Gemm) with a
    fused Sigmoid instead of a two-channel Softmax and a Gather outside the blocked
    layout (P-Net's Softmax alone took ~1 ms at 308x308). Eager keeps the softmax, so the
    PyTorch reference is the textbook form.
    """
    if not torch.onnx.is_in_onnx_export():
        return torch.softmax(logits(x), dim=1)[:, 1]
    weight = logits.weight[1:2] - logits.weight[0:1]
    bias = logits.bias[1:2] - logits.bias[0:1]
    if isinstance(logits, nn.Conv2d):
        return torch.sigmoid(nn.functional.conv2d(x, weight, bias))[:, 0]
    return torch.sigmoid(nn.functional.linear(x, weight, bias))[:, 0]


def _dense_on_caffe_flatten(dense: nn.Linear, x: torch.Tensor, channels: int) -> torch.Tensor:
    """``dense`` on ``x`` (N, C, H, W) flattened in (W, H, C) order, as the original
    Caffe-trained dense layers expect.

    Eager permutes the activations; the exported graph permutes the weight's columns
    instead (constant-folded when the session loads; the same products summed in another
    order), so ORT runs a plain Flatten and Gemm with no Transpose of every crop.
    ``channels`` is passed as a number so that the export sees constants, not shapes.
    """
    if not torch.onnx.is_in_onnx_export():
        return dense(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1))
    side = round((dense.in_features // channels) ** 0.5)
    weight = dense.weight.detach().reshape(-1, side, side, channels).permute(0, 3, 2, 1)
    return nn.functional.linear(x.flatten(1), weight.reshape(weight.shape[0], -1), dense.bias)


@register_architecture("mtcnn_pnet")
class PNet(nn.Module):
    """Proposal net: fully convolutional, runs on every pyramid level (stride 2, 12x12 cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = SplitPReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = SplitPReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = SplitPReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        prob = face_probability(self.conv4_1, x)
        return self.conv4_2(x), prob


@register_architecture("mtcnn_rnet")
class RNet(nn.Module):
    """Refinement net: scores and regresses 24x24 crops of P-Net's candidates."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = SplitPReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = SplitPReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = SplitPReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = SplitPReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(_dense_on_caffe_flatten(self.dense4, x, self.conv3.out_channels))
        prob = face_probability(self.dense5_1, x)
        return self.dense5_2(x), prob


@register_architecture("mtcnn_onet")
class ONet(nn.Module):
    """Output net: final score, box regression and five landmarks on 48x48 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = SplitPReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = SplitPReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = SplitPReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = SplitPReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = SplitPReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(_dense_on_caffe_flatten(self.dense5, x, self.conv4.out_channels))
        prob = face_probability(self.dense6_1, x)
        return self.dense6_2(x), prob, self.dense6_3(x)
