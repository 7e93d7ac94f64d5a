"""Building blocks of the ``av-fbp`` family: audio FCN, scaled attention pooling, FBP fusion.

Kept apart from the family module so the maths (attention, factorized bilinear pooling,
MFB normalisation) can be tested on its own against numpy references.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

# Finite stand-in for -inf in masked softmax: a fully masked row then gives a uniform
# (finite) weighting instead of NaN, e.g. a clip in which no frame has a face.
_MASKED = -1e9


class AudioFCN(nn.Module):
    """Log-mel (B, 1, n_mels, frames) -> cell grid (B, L = F' * T', C), any number of frames.

    Input BatchNorm standardises the log-mel (whose offsets are large, e.g. log(1e-6) in
    silence); then per stage a 3x3 same-padded conv, BatchNorm, ReLU and a 2x2 max-pool with
    ``ceil_mode=True``. Ceil mode keeps at least one cell on every axis for ANY input length
    (even one frame), so very short clips need no padding and no shape arithmetic in the graph.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        previous = 1
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.stages = len(channels)
        self.out_channels = previous

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        cells = self.body(self.input_norm(mel))  # (B, C, F', T')
        return cells.flatten(2).transpose(1, 2)  # (B, F' * T', C), frequency-major

    def cell_mask(self, lengths: torch.Tensor, mel_frames: int, n_mels: int) -> torch.Tensor:
        """(B, L) validity of each cell for clips of ``lengths`` frames padded to ``mel_frames``.

        Each ceil-mode pool maps t frames to ceil(t / 2), so after P stages the valid time
        cells are ceil(length / 2^P). Training only (exported graphs take unpadded clips).
        """
        scale = 2**self.stages
        cells_t = -(-mel_frames // scale)
        cells_f = -(-n_mels // scale)
        valid_t = torch.div(lengths + scale - 1, scale, rounding_mode="floor")
        time_ok = torch.arange(cells_t, device=lengths.device)[None] < valid_t[:, None]
        return time_ok[:, None, :].expand(-1, cells_f, -1).reshape(lengths.shape[0], -1)


class ScaledAttentionPool(nn.Module):
    """Set (B, L, C) -> (B, C): e_i = u^T tanh(W x_i + b), alpha = softmax(λ e), Σ alpha_i x_i.

    λ in [0, 1] is a fixed scale (config value, not learned): 1 is the ordinary softmax,
    0 makes every weight 1/L (the plain mean). The spec writes the same block for audio cells
    and video frames; for video the review's Eq. 7 has no W inside tanh, which is the W = I,
    b = 0 special case of this block.
    """

    def __init__(self, dim: int, attention_dim: int, lam: float) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"attention λ must lie in [0, 1], got {lam}")
        self.proj = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.lam = float(lam)

    def weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) attention weights alpha; ``mask`` (B, L) bool marks the valid items."""
        scores = self.score(torch.tanh(self.proj(x))).squeeze(-1) * self.lam
        if mask is not None:
            scores = scores.masked_fill(~mask, _MASKED)
        return torch.softmax(scores, dim=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        alpha = self.weights(x, mask)
        return (alpha.unsqueeze(-1) * x).sum(dim=1)


def signed_sqrt(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Power normalisation sign(z) * (sqrt(|z| + eps) - sqrt(eps)).

    The plain signed square root has an infinite slope at 0. Adding ``eps`` inside the root
    bounds the slope by 1 / (2 sqrt(eps)); subtracting sqrt(eps) keeps the map continuous
    (and exactly 0 at 0), so a value whose sign differs between PyTorch and ONNX Runtime by
    rounding cannot jump the output by 2 sqrt(eps). For |z| >> eps it equals sign(z) sqrt|z|.
    """
    return torch.sign(z) * (torch.sqrt(z.abs() + eps) - math.sqrt(eps))


class FactorizedBilinearPooling(nn.Module):
    """MFB fusion: z = SumPool(Ũ^T a ∘ Ṽ^T v, k) -> signed sqrt -> L2 normalise -> (B, o).

    Ũ (m x ko) and Ṽ (n x ko) are bias-free linear layers; the product is summed over the
    non-overlapping windows [j k, (j + 1) k) of the ko vector, which equals o bilinear forms
    z_j = a^T U_j V_j^T v of rank k.
    """

    def __init__(self, audio_dim: int, video_dim: int, factor: int, out_dim: int, eps: float):
        super().__init__()
        self.factor = factor
        self.out_dim = out_dim
        self.eps = float(eps)
        self.audio_proj = nn.Linear(audio_dim, factor * out_dim, bias=False)
        self.video_proj = nn.Linear(video_dim, factor * out_dim, bias=False)

    def pooled(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, o) sum-pooled bilinear features before normalisation."""
        joint = self.audio_proj(a) * self.video_proj(v)
        return joint.reshape(-1, self.out_dim, self.factor).sum(dim=-1)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        z = signed_sqrt(self.pooled(a, v), self.eps)
        return F.normalize(z, p=2.0, dim=-1, eps=1e-12)
