"""CocoER building blocks (spec section 1, steps 2-5): backbone, patch embedding, attention, g.

All shapes are static except the batch, so the graphs export with one dynamic axis.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LevelBackbone(nn.Module):
    """R_m: a small CNN, (B, 3, H, W) -> u_m (B, c, h, w); each stage halves the resolution.

    Stage = 3x3 conv (stride 2) + BatchNorm + ReLU, then a 3x3 conv (stride 1) + BN + ReLU.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            previous = width
        self.layers = nn.Sequential(*layers)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.layers(window)


class PatchEmbedding(nn.Module):
    """E_m: split u_m into N = hw/p^2 non-overlapping p x p patches (p^2 c values each) and map
    each linearly to d_h. A p x p convolution with stride p is exactly that linear map."""

    def __init__(self, channels: int, patch: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch, stride=patch)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) -> ū_m (B, N, d_h), patches in row-major order."""
        return self.proj(features).flatten(2).transpose(1, 2)


class CrossLevelAttention(nn.Module):
    """T_{m,c}: single-head attention of a level against the context, then FFN0 and mean.

    Q = ū_m W_m0, K = ū_c W_c, V = ū_m W_m1 (bias-free d_h x d_h maps; V from the level itself,
    as the method states, which needs N_m = N_c: all windows share one size);
    gamma = softmax(Q K^T / sqrt(d_h)) (standard scaling; the review's placement is a typo);
    z̄ = gamma V; ż = z̄ + ū_m; z = FFN0(LN(ż)) + ż; output = mean of z over the N tokens.
    With ``context`` = ``level`` this is the context's self-attention T_{c,c}. Each T has
    its own W's and FFN0 (the review does not say they are shared).
    """

    def __init__(self, width: int, ffn_mult: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(width, width, bias=False)  # W_m^0
        self.w_key = nn.Linear(width, width, bias=False)  # W_c
        self.w_value = nn.Linear(width, width, bias=False)  # W_m^1
        self.norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Linear(ffn_mult * width, width)
        )
        self.scale = 1.0 / math.sqrt(width)

    def forward(self, level: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """ū_m, ū_c: (B, N, d_h) -> z_m (B, d_h)."""
        query, key, value = self.w_query(level), self.w_key(context), self.w_value(level)
        gamma = torch.softmax(query @ key.transpose(1, 2) * self.scale, dim=-1)
        z_dot = gamma @ value + level
        z = self.ffn(self.norm(z_dot)) + z_dot
        return z.mean(dim=1)


class LevelHead(nn.Module):
    """g_θm: hidden layer(s) d_h -> d (Linear + GELU), then the prediction layer θ_l^m (d x k,
    bias-free, so the workspace's gradient w.r.t. θ_l is exactly h (p - y)^T)."""

    def __init__(self, width: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = width
        for _ in range(layers):
            blocks += [nn.Linear(previous, hidden), nn.GELU()]
            previous = hidden
        self.hidden = nn.Sequential(*blocks)
        self.predict = nn.Linear(hidden, classes, bias=False)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_m (B, d_h) -> (hidden output h_m (B, d), logits (B, k))."""
        hidden = self.hidden(z)
        return hidden, self.predict(hidden)
