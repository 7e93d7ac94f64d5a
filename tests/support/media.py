"""WAV bytes written by hand, for readers the stdlib cannot exercise (float, lying sizes)."""

from __future__ import annotations

import numpy as np


def float_wav(samples: np.ndarray, rate: int) -> bytes:
    """IEEE-float WAV bytes written by hand (format tag 3; the stdlib cannot write it)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    data = frames.astype("<f4").tobytes()
    channels = frames.shape[1]
    fmt = (
        (3).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * 4 * channels).to_bytes(4, "little")
        + (4 * channels).to_bytes(2, "little")
        + (32).to_bytes(2, "little")
    )
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"LIST" + (3).to_bytes(4, "little") + b"abc\x00"  # odd chunk, padded
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body



def wav_bytes(samples: np.ndarray, rate: int, declared_data: int | None = None) -> bytes:
    """16-bit PCM WAV bytes of (n,) or (n, channels) samples; ``declared_data`` overrides the
    data chunk's stated size."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = (
        (1).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * 2 * channels).to_bytes(4, "little")
        + (2 * channels).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
    )
    size = len(data) if declared_data is None else declared_data
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + size.to_bytes(4, "little") + data
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + body

