"""M2FNet's audio augmentation (paper Sec. 3.1: time warping and additive white Gaussian
noise before the mel spectrogram), applied to training batches only.

The recipe's batches (generated or read from a data set) carry log-mels made by the shared
front-end (:func:`edge_sdk.preprocess.audio.log_mel`), not waveforms, so both operations are
written on the log-mel, in the terms of that front-end:

* Time warping: SpecAugment's warp (Park et al. 2019), the usual meaning of the term for
  spectrogram models: a random centre frame c of the utterance's valid frames moves to
  c + w, |w| <= ``time_warp`` x length, and both sides are stretched linearly (linear
  interpolation along time). Length, mask and padding are unchanged.
* AWGN: white noise of variance σ² has, per FFT bin and frame, a periodogram σ² Σ window²
  x Exp(1) (bins strictly inside (0, Nyquist); the filterbank's f_min > 0 and f_max < Nyquist
  give the edge bins zero weight). That noise periodogram is drawn and put through the same
  filterbank, then added in the power domain: log(exp(m) - floor + noise + floor). What is
  left out is the signal x noise cross term, which has zero mean. σ² is set per utterance
  from an SNR (dB) drawn uniformly in ``noise_snr_db``: mean mel power of the valid frames
  over mean noise mel power.

Randomness comes from ``generator`` (or torch's global generator, which
:func:`edge_sdk.models.training.train` seeds), so a seeded run is reproducible; the model
calls this only in training mode, never at evaluation, export or deployment.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from edge_sdk.errors import InputError
from edge_sdk.preprocess.audio import MelConfig, mel_filterbank


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


def time_warp(
    mel: Tensor, frame_mask: Tensor, warp: float, generator: torch.Generator | None = None
) -> Tensor:
    """SpecAugment time warp of each utterance's valid frames (see the module docstring)."""
    out = mel.clone()
    lengths = (frame_mask > 0.5).sum(-1).tolist()
    for i, length in enumerate(lengths):
        span = int(warp * length)
        if span < 1 or length < 2 * span + 3:
            continue
        # centre + shift stays within [1, length - 2]: both stretched sides keep a frame
        centre = int(torch.randint(span + 1, length - span - 1, (1,), generator=generator))
        shift = int(torch.randint(-span, span + 1, (1,), generator=generator))
        if shift == 0:
            continue
        target = centre + shift
        t = torch.arange(length, dtype=mel.dtype)
        source = torch.where(
            t < target,
            t * centre / target,
            centre + (t - target) * (length - 1 - centre) / (length - 1 - target),
        )
        low = source.floor().long().clamp(0, length - 1)
        high = (low + 1).clamp(max=length - 1)
        frac = source - low.to(mel.dtype)
        valid = mel[i, :, :length]
        out[i, :, :length] = valid[:, low] * (1 - frac) + valid[:, high] * frac
    return out


def add_white_noise(
    mel: Tensor,
    frame_mask: Tensor,
    mel_config: MelConfig,
    snr_db: tuple[float, float],
    generator: torch.Generator | None = None,
) -> Tensor:
    """AWGN at a random SNR per utterance, through the front-end's filterbank (module doc)."""
    fb = torch.from_numpy(mel_filterbank(mel_config)).to(mel.dtype)  # (n_mels, bins)
    if fb.shape[0] != mel.shape[1]:
        raise InputError(f"log-mel has {mel.shape[1]} bands, the front-end {fb.shape[0]}")
    floor = mel_config.log_floor
    valid = (frame_mask > 0.5).to(mel.dtype).unsqueeze(1)  # (U, 1, T)
    power = (mel.exp() - floor).clamp(min=0.0)
    frames = valid.sum((1, 2)).clamp(min=1.0) * mel.shape[1]
    signal = (power * valid).sum((1, 2)) / frames  # mean mel power per utterance
    snr = _uniform((mel.shape[0],), snr_db[0], snr_db[1], generator, mel.dtype)
    # mean over bands of a unit-scale noise's mel power = mean filter row sum
    scale = signal / (10.0 ** (snr / 10.0)) / fb.sum(1).mean()
    periodogram = -torch.log1p(
        -torch.rand(
            (mel.shape[0], fb.shape[1], mel.shape[2]), generator=generator, dtype=mel.dtype
        ).clamp(max=1 - 1e-7)
    )  # Exp(1) per bin and frame
    noise = scale[:, None, None] * (fb @ periodogram)
    noisy = torch.log(power + noise + floor)
    return torch.where(valid > 0.5, noisy, mel)


def augment_log_mel(
    mel: Tensor,
    frame_mask: Tensor,
    mel_config: MelConfig,
    *,
    time_warp_fraction: float,
    snr_db: tuple[float, float] | None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Time warping then AWGN (the paper's order on the waveform: both before the mel)."""
    out = mel
    if time_warp_fraction > 0:
        out = time_warp(out, frame_mask, time_warp_fraction, generator)
    if snr_db:
        low, high = float(snr_db[0]), float(snr_db[1])
        if not np.isfinite([low, high]).all() or low > high:
            raise InputError(f"noise SNR range {snr_db} must be two finite dB values, low first")
        out = add_white_noise(out, frame_mask, mel_config, (low, high), generator)
    return out
