"""Audio front-end: any waveform -> mono float32 at the model rate -> log-mel spectrogram.

One implementation (numpy) serves training, export checks and deployment, so the features
a model sees on the device are the ones it was trained on. Validation catches the common
failures before any maths: empty or 1-sample audio, NaN/Inf, a rate that is not an integer
within ``MIN_SAMPLE_RATE``-``MAX_SAMPLE_RATE`` Hz (a bool, 0, a float), ambiguous layouts, and
audio longer than ``MAX_AUDIO_SECONDS``. Rate and duration are checked before resampling (a
1 Hz clip resampled to 16 kHz grows 16000-fold) and, for WAV files, from the header before
any sample is read or converted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_sdk.errors import InputError

MIN_SAMPLE_RATE = 1_000  # Hz; below this nothing speech-like survives, and resampling explodes
MAX_SAMPLE_RATE = 384_000  # Hz; the highest rate audio interfaces record at
MAX_AUDIO_SECONDS = 600.0  # default cap on a clip's duration (override with max_seconds=)
# Float samples are expected in [-1, 1]; far beyond, |rfft|^2 overflows float32 into NaN.
MAX_AMPLITUDE = 1e6
MAX_CHANNELS = 64  # a 2-D array whose short axis is longer than this has no clear layout


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


def _channels_first(shape: tuple[int, ...], channels_first: bool | None) -> bool:
    """Whether a 2-D array is (channels, samples): the short axis holds the channels.

    Raises InputError when the would-be channel axis is longer than ``MAX_CHANNELS`` (an
    array such as (100, 16000) cannot be told apart from (16000, 100) by shape alone).
    """
    first = shape[0] < shape[1] if channels_first is None else channels_first
    channels = shape[0] if first else shape[1]
    if channels > MAX_CHANNELS:
        raise InputError(
            f"audio of shape {shape} would have {channels} channels (more than "
            f"{MAX_CHANNELS}): pass (samples,), (samples, channels) or (channels, samples)"
        )
    return first


def sample_count(waveform: np.ndarray, channels_first: bool | None = None) -> int:
    """Samples per channel of a (n,), (n, c) or (c, n) array, read as :func:`to_mono` does."""
    if waveform.ndim == 1:
        return int(waveform.shape[0])
    if waveform.ndim == 2:
        first = _channels_first(waveform.shape, channels_first)
        return int(waveform.shape[1] if first else waveform.shape[0])
    raise InputError(f"audio must be (samples,) or (samples, channels), got {waveform.shape}")


def to_mono(waveform: np.ndarray, *, channels_first: bool | None = None) -> np.ndarray:
    """(n,), (n, c) or (c, n) -> (n,) float32 mean over channels.

    A 2-D array is read as (channels, samples) when its first axis is the shorter one (at
    most ``MAX_CHANNELS`` channels), unless ``channels_first`` says otherwise.
    """
    audio = np.asarray(waveform)
    if audio.ndim == 2:
        first = _channels_first(audio.shape, channels_first)
        audio = audio.mean(axis=0 if first else 1)
    if audio.ndim != 1:
        raise InputError(f"audio must be (samples,) or (samples, channels), got {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
    return audio.astype(np.float32)


def check_rate(sample_rate: object, name: str = "audio") -> int:
    """The sample rate as an int, or InputError: not a bool or float (NaN, 16000.5 or even
    16000.0: a float rate is a caller's mix-up), and within the supported range."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(
        sample_rate, (int, np.integer)
    ):
        raise InputError(
            f"{name}: sample rate must be a positive integer (Hz), got {sample_rate!r} "
            f"of type {type(sample_rate).__name__}"
        )
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(
            f"{name}: sample rate must be a positive integer from {MIN_SAMPLE_RATE} to "
            f"{MAX_SAMPLE_RATE} Hz, got {rate}"
        )
    return rate


def check_duration(
    samples: int, sample_rate: int, max_seconds: float = MAX_AUDIO_SECONDS, name: str = "audio"
) -> None:
    """InputError when ``samples`` at ``sample_rate`` last longer than ``max_seconds``."""
    seconds = samples / sample_rate
    if seconds > max_seconds:
        raise InputError(
            f"{name}: {seconds:.1f} s of audio ({samples} samples at {sample_rate} Hz) is longer "
            f"than the {max_seconds:g} s allowed (max_seconds / MAX_AUDIO_SECONDS)"
        )


def validate(
    waveform: np.ndarray,
    sample_rate: int,
    min_seconds: float = 0.05,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> None:
    """Raise InputError for mono audio that cannot be analysed (before any resampling)."""
    rate = check_rate(sample_rate)
    if waveform.size == 0:
        raise InputError("audio is empty (0 samples)")
    check_duration(waveform.shape[0], rate, max_seconds)
    if not np.isfinite(waveform).all():
        raise InputError("audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(waveform)))
    if peak > MAX_AMPLITUDE:
        raise InputError(
            f"audio samples reach {peak:.3g}; expected [-1, 1] (at most {MAX_AMPLITUDE:g}, "
            "beyond which the spectrum overflows float32)"
        )
    if waveform.shape[0] < min_seconds * rate:
        raise InputError(
            f"audio has {waveform.shape[0]} samples ({waveform.shape[0] / rate:.3f} s); "
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


def log_mel(
    waveform: np.ndarray,
    sample_rate: int,
    config: MelConfig,
    *,
    max_seconds: float = MAX_AUDIO_SECONDS,
    channels_first: bool | None = None,
) -> np.ndarray:
    """Validated waveform at any rate -> (n_mels, frames) float32 log-mel spectrogram."""
    audio = to_mono(waveform, channels_first=channels_first)
    validate(audio, sample_rate, max_seconds=max_seconds)
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
_WAVE_KINDS = {  # (format tag, bytes per sample) -> numpy dtype; 24-bit PCM is unpacked by hand
    (_WAVE_PCM, 1): "u1",
    (_WAVE_PCM, 2): "<i2",
    (_WAVE_PCM, 4): "<i4",
    (_WAVE_FLOAT, 4): "<f4",
    (_WAVE_FLOAT, 8): "<f8",
}
_WAVE_MAX_CHUNKS = 1024  # chunks before "data"; real files have a handful
MAX_AUDIO_BYTES = 512 * 1024 * 1024  # refuse to read a WAV file (or WAV bytes) larger than this


@dataclass(frozen=True)
class Audio:
    """A waveform and its sample rate, as callers hand it to ``predict(audio=...)``.

    ``samples`` is (n,), (n, channels) or (channels, n); integer PCM is scaled to [-1, 1].
    ``channels_first`` fixes the layout of a 2-D array (None: the shorter axis is channels);
    WAV files set it, since their layout is known.
    """

    samples: np.ndarray
    sample_rate: int
    channels_first: bool | None = None


AudioInput = Audio | tuple | str | os.PathLike | bytes | bytearray


@dataclass(frozen=True)
class WavHeader:
    """What a WAV file declares, checked, with where its samples lie: enough to refuse a file
    by its rate, encoding or duration before a single sample is read or converted."""

    tag: int
    channels: int
    sample_rate: int
    width: int  # bytes per sample
    data_offset: int
    data_size: int  # bytes of whole frames present: the declared size cut to the file's end

    @property
    def frames(self) -> int:
        """Samples per channel."""
        return self.data_size // (self.width * self.channels)


def read_wav_header(
    read_at: Callable[[int, int], bytes],
    size: int,
    name: str = "WAV data",
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> WavHeader:
    """Parse and check the chunks of a RIFF/WAVE file of ``size`` bytes up to its data chunk.

    ``read_at(offset, count)`` returns up to ``count`` bytes at ``offset``, so a file is read
    only as far as its headers. Raises InputError for a malformed header, an unsupported
    encoding, a rate outside ``MIN_SAMPLE_RATE``-``MAX_SAMPLE_RATE``, more than
    ``MAX_CHANNELS`` channels, or more than ``max_seconds`` of audio.
    """
    head = read_at(0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise InputError(f"{name}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    data: tuple[int, int] | None = None
    offset = 12
    for _ in range(_WAVE_MAX_CHUNKS):
        if offset + 8 > size:
            break
        chunk_head = read_at(offset, 8)
        chunk, length = chunk_head[:4], int.from_bytes(chunk_head[4:8], "little")
        if chunk == b"fmt ":
            body = read_at(offset + 8, min(length, 40))
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
            data = (offset + 8, max(0, min(length, size - offset - 8)))
            break
        offset += 8 + length + (length & 1)  # chunks are padded to even sizes
    else:
        raise InputError(f"{name}: more than {_WAVE_MAX_CHUNKS} chunks before the data chunk")
    if fmt is None or data is None:
        raise InputError(f"{name}: WAV file lacks a fmt or data chunk")
    tag, channels, rate, bits = fmt
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(
            f"{name}: WAV header declares {channels} channels (1 to {MAX_CHANNELS} are read)"
        )
    width = bits // 8
    if bits % 8 or ((tag, width) not in _WAVE_KINDS and (tag, width) != (_WAVE_PCM, 3)):
        raise InputError(f"{name}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    rate = check_rate(rate, name)
    whole = data[1] - data[1] % (width * channels)
    header = WavHeader(tag, channels, rate, width, data[0], whole)
    check_duration(header.frames, rate, max_seconds, name)
    return header


def decode_wav(header: WavHeader, payload: bytes | memoryview) -> Audio:
    """The samples of a checked header's data chunk -> (frames, channels) float32 Audio."""
    payload = payload[: len(payload) - len(payload) % (header.width * header.channels)]
    if (header.tag, header.width) == (_WAVE_PCM, 3):
        raw = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = (raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) << 8 >> 8  # sign-extend
        samples = values.astype(np.float32) / 8388608.0
    else:
        samples = np.frombuffer(payload, dtype=_WAVE_KINDS[(header.tag, header.width)])
        if samples.dtype == np.uint8:
            samples = (samples.astype(np.float32) - 128.0) / 128.0
        elif np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        else:
            samples = samples.astype(np.float32)
    return Audio(samples.reshape(-1, header.channels), header.sample_rate, channels_first=False)


def read_wav(
    data: bytes, name: str = "WAV data", *, max_seconds: float = MAX_AUDIO_SECONDS
) -> Audio:
    """Parse a RIFF/WAVE file (PCM 8/16/24/32-bit or IEEE float 32/64-bit) into an Audio.

    The stdlib ``wave`` module reads PCM only; kiosk recorders often write float WAVs, so the
    few chunks needed are parsed here (:func:`read_wav_header` checks the header before any
    sample is converted). Every malformation is an InputError naming ``name``.
    """
    if len(data) > MAX_AUDIO_BYTES:
        raise InputError(f"{name}: larger than {MAX_AUDIO_BYTES} bytes")
    view = memoryview(data)
    header = read_wav_header(
        lambda offset, count: bytes(view[offset : offset + count]), len(data), name, max_seconds
    )
    return decode_wav(header, view[header.data_offset : header.data_offset + header.data_size])


def read_wav_file(path: str | os.PathLike[str], max_seconds: float = MAX_AUDIO_SECONDS) -> Audio:
    """A WAV file -> Audio, reading its samples only once the header has passed the checks."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such audio file")
    size = file.stat().st_size
    if size > MAX_AUDIO_BYTES:
        raise InputError(f"{file}: larger than {MAX_AUDIO_BYTES} bytes")
    with file.open("rb") as handle:

        def read_at(offset: int, count: int) -> bytes:
            handle.seek(offset)
            return handle.read(count)

        header = read_wav_header(read_at, size, str(file), max_seconds)
        payload = read_at(header.data_offset, header.data_size)
    return decode_wav(header, payload)


def load_audio(
    audio: AudioInput, sample_rate: int | None = None, *, max_seconds: float = MAX_AUDIO_SECONDS
) -> Audio:
    """Any supported audio input -> Audio with a checked rate and duration (samples not yet
    validated, mixed or resampled).

    Accepts an :class:`Audio`, a ``(samples, sample_rate)`` tuple, an array with
    ``sample_rate`` given, a WAV file path or WAV bytes. ``max_seconds`` caps the duration
    (default ``MAX_AUDIO_SECONDS``); WAV files are refused from their header.
    """
    if isinstance(audio, (bytes, bytearray)):
        return read_wav(bytes(audio), max_seconds=max_seconds)
    if isinstance(audio, (str, os.PathLike)):
        return read_wav_file(audio, max_seconds)
    if isinstance(audio, Audio):
        loaded = audio
    elif isinstance(audio, tuple):
        if len(audio) != 2:
            raise InputError("audio tuples must be (samples, sample_rate)")
        loaded = Audio(np.asarray(audio[0]), audio[1])
    elif isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise InputError("an audio array needs its sample rate: pass (samples, sample_rate)")
        loaded = Audio(audio, sample_rate)
    else:
        raise InputError(f"unsupported audio input of type {type(audio).__name__}")
    rate = check_rate(loaded.sample_rate)
    samples = np.asarray(loaded.samples)
    if samples.ndim in (1, 2):  # other shapes are named by audio_log_mel
        check_duration(sample_count(samples, loaded.channels_first), rate, max_seconds)
    return Audio(samples, rate, loaded.channels_first)


def audio_log_mel(
    audio: AudioInput, config: MelConfig, *, max_seconds: float = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """Audio input at any rate/layout -> checked (n_mels, frames) log-mel (:func:`log_mel`).

    Checks the rate and duration (at most ``max_seconds``) and then the array itself (numeric,
    1-D or 2-D) so a bad input is named before the maths.
    """
    loaded = load_audio(audio, max_seconds=max_seconds)
    samples = np.asarray(loaded.samples)
    if samples.dtype == object or not (
        np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.integer)
    ):
        raise InputError(f"audio samples must be numeric, got dtype {samples.dtype}")
    if samples.ndim == 0 or samples.ndim > 2:
        raise InputError(f"audio must be (samples,) or (samples, channels), got {samples.shape}")
    if samples.size == 0:
        raise InputError("audio is empty (0 samples)")
    return log_mel(
        samples,
        loaded.sample_rate,
        config,
        max_seconds=max_seconds,
        channels_first=loaded.channels_first,
    )
