"""Audio front-end: any waveform -> mono float32 at the model rate -> log-mel spectrogram.

One implementation (numpy) serves training, export checks and deployment, so the features
a model sees on the device are the ones it was trained on. Validation catches the common
failures before any maths: empty or 1-sample audio, NaN/Inf, rate 0, ambiguous layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_sdk.errors import InputError


@dataclass(frozen=True)
class MelConfig:
    """Log-mel parameters; stored in the bundle's manifest config."""

    sample_rate: int = 16000
    n_fft: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6


def to_mono(waveform: np.ndarray, *, channels_first: bool | None = None) -> np.ndarray:
    """(n,), (n, c) or (c, n) -> (n,) float32 mean over channels.

    A 2-D array is read as (channels, samples) when its first axis is the short one
    (at most 8 channels), unless ``channels_first`` says otherwise.
    """
    audio = np.asarray(waveform)
    if audio.ndim == 2:
        first = audio.shape[0] <= 8 < audio.shape[1] if channels_first is None else channels_first
        audio = audio.mean(axis=0 if first else 1)
    if audio.ndim != 1:
        raise InputError(f"audio must be (samples,) or (samples, channels), got {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
    return audio.astype(np.float32)


def validate(waveform: np.ndarray, sample_rate: int, min_seconds: float = 0.05) -> None:
    """Raise InputError for audio that cannot be analysed."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"sample rate must be a positive integer, got {sample_rate!r}")
    if waveform.size == 0:
        raise InputError("audio is empty (0 samples)")
    if not np.isfinite(waveform).all():
        raise InputError("audio contains NaN or infinite samples")
    if waveform.shape[0] < min_seconds * sample_rate:
        raise InputError(
            f"audio has {waveform.shape[0]} samples ({waveform.shape[0] / sample_rate:.3f} s); "
            f"at least {min_seconds} s are needed"
        )


def resample(waveform: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by FFT (exact for the periodic signal, fine for speech)."""
    if rate_in == rate_out:
        return waveform.astype(np.float32)
    samples = round(waveform.shape[0] * rate_out / rate_in)
    spectrum = np.fft.rfft(waveform.astype(np.float64))
    keep = min(spectrum.shape[0], samples // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], n=samples) * (samples / waveform.shape[0])
    return out.astype(np.float32)


@lru_cache(maxsize=8)
def mel_filterbank(config: MelConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = mel_to_hz(
        np.linspace(
            hz_to_mel(np.array(config.f_min)), hz_to_mel(np.array(config.f_max)), config.n_mels + 2
        )
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(waveform: np.ndarray, sample_rate: int, config: MelConfig) -> np.ndarray:
    """Validated waveform at any rate -> (n_mels, frames) float32 log-mel spectrogram."""
    audio = to_mono(waveform)
    validate(audio, sample_rate)
    audio = resample(audio, int(sample_rate), config.sample_rate)
    if audio.shape[0] < config.n_fft:
        audio = np.pad(audio, (0, config.n_fft - audio.shape[0]))
    frames = 1 + (audio.shape[0] - config.n_fft) // config.hop_length
    index = np.arange(config.n_fft)[None] + config.hop_length * np.arange(frames)[:, None]
    window = np.hanning(config.n_fft + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(audio[index] * window, axis=1)) ** 2
    mel = mel_filterbank(config) @ power.T.astype(np.float32)
    return np.log(mel + config.log_floor).astype(np.float32)
