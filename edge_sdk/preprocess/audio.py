"""Audio front-end: any waveform -> mono float32 at the model rate -> log-mel spectrogram.

One implementation (numpy) serves training, export checks and deployment, so the features
a model sees on the device are the ones it was trained on. Validation catches the common
failures before any maths: empty or 1-sample audio, NaN/Inf, rate 0, ambiguous layouts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


# --- reading audio from callers ----------------------------------------------------------------

_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 1, 3, 0xFFFE
MAX_AUDIO_BYTES = 512 * 1024 * 1024  # refuse to read a WAV file larger than this


@dataclass(frozen=True)
class Audio:
    """A waveform and its sample rate, as callers hand it to ``predict(audio=...)``.

    ``samples`` is (n,), (n, channels) or (channels, n); integer PCM is scaled to [-1, 1].
    """

    samples: np.ndarray
    sample_rate: int


AudioInput = Audio | tuple | str | os.PathLike | bytes | bytearray


def read_wav(data: bytes, name: str = "WAV data") -> Audio:
    """Parse a RIFF/WAVE file (PCM 8/16/24/32-bit or IEEE float 32/64-bit) into an Audio.

    The stdlib ``wave`` module reads PCM only; kiosk recorders often write float WAVs, so the
    few chunks needed are parsed here. Every malformation is an InputError naming ``name``.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError(f"{name}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = data[offset + 8 : offset + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise InputError(f"{name}: truncated fmt chunk")
            tag = int.from_bytes(body[0:2], "little")
            if tag == _WAVE_EXTENSIBLE and len(body) >= 26:
                tag = int.from_bytes(body[24:26], "little")  # sub-format GUID's first two bytes
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
            bits = int.from_bytes(body[14:16], "little")
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            payload = body
            break
        offset += 8 + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None or payload is None:
        raise InputError(f"{name}: WAV file lacks a fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1:
        raise InputError(f"{name}: WAV header declares {channels} channels")
    width = bits // 8
    kinds = {
        (_WAVE_PCM, 1): "u1",
        (_WAVE_PCM, 2): "<i2",
        (_WAVE_PCM, 4): "<i4",
        (_WAVE_FLOAT, 4): "<f4",
        (_WAVE_FLOAT, 8): "<f8",
    }
    usable = len(payload) - len(payload) % (width * channels) if width else 0
    if (tag, width) == (_WAVE_PCM, 3):
        raw = np.frombuffer(payload[:usable], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = (raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) << 8 >> 8  # sign-extend
        samples = values.astype(np.float32) / 8388608.0
    elif (tag, width) in kinds:
        samples = np.frombuffer(payload[:usable], dtype=kinds[(tag, width)])
        if samples.dtype == np.uint8:
            samples = (samples.astype(np.float32) - 128.0) / 128.0
        elif np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        else:
            samples = samples.astype(np.float32)
    else:
        raise InputError(f"{name}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    return Audio(samples.reshape(-1, channels), rate)


def load_audio(audio: AudioInput, sample_rate: int | None = None) -> Audio:
    """Any supported audio input -> Audio (samples not yet validated, mixed or resampled).

    Accepts an :class:`Audio`, a ``(samples, sample_rate)`` tuple, an array with
    ``sample_rate`` given, a WAV file path or WAV bytes.
    """
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, tuple):
        if len(audio) != 2:
            raise InputError("audio tuples must be (samples, sample_rate)")
        return Audio(np.asarray(audio[0]), audio[1])
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise InputError("an audio array needs its sample rate: pass (samples, sample_rate)")
        return Audio(audio, sample_rate)
    if isinstance(audio, (bytes, bytearray)):
        return read_wav(bytes(audio))
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise InputError(f"{path}: no such audio file")
        if path.stat().st_size > MAX_AUDIO_BYTES:
            raise InputError(f"{path}: larger than {MAX_AUDIO_BYTES} bytes")
        return read_wav(path.read_bytes(), name=str(path))
    raise InputError(f"unsupported audio input of type {type(audio).__name__}")


def audio_log_mel(audio: AudioInput, config: MelConfig) -> np.ndarray:
    """Audio input at any rate/layout -> checked (n_mels, frames) log-mel (:func:`log_mel`).

    Checks the array itself first (numeric, 1-D or 2-D) so a bad layout or dtype is named
    before the maths.
    """
    loaded = load_audio(audio)
    samples = np.asarray(loaded.samples)
    if samples.dtype == object or not (
        np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.integer)
    ):
        raise InputError(f"audio samples must be numeric, got dtype {samples.dtype}")
    if samples.ndim == 0 or samples.ndim > 2:
        raise InputError(f"audio must be (samples,) or (samples, channels), got {samples.shape}")
    if samples.size == 0:
        raise InputError("audio is empty (0 samples)")
    return log_mel(samples, loaded.sample_rate, config)
