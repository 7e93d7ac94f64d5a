"""Where calibration inputs come from: folders or list files of media, sampled by seed.

Sampling is seeded and the selection is hashed, so the manifest's calibration record says
exactly which data produced the scales.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge_sdk.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
T = TypeVar("T")


AUDIO_SUFFIXES = frozenset({".wav"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})


def image_paths(source: str | Path) -> list[Path]:
    """Images under a folder (recursively) or listed in a text file (one path a line)."""
    return media_paths(source, IMAGE_SUFFIXES)


def media_paths(source: str | Path, suffixes: frozenset[str]) -> list[Path]:
    """Files with ``suffixes`` under a folder (recursively) or listed in a text file.

    Relative paths in a list file are relative to the file; blank lines and ``#``
    comments are ignored. The result is sorted so sampling is reproducible.
    """
    root = Path(source)
    if root.is_dir():
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    elif root.is_file():
        found = []
        for number, line in enumerate(root.read_text(encoding="utf-8").splitlines(), 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry) if Path(entry).is_absolute() else root.parent / entry
            if not path.is_file():
                raise InputError(f"{root}:{number}: listed file {entry!r} does not exist")
            found.append(path)
    else:
        raise InputError(f"calibration data {root} is neither a folder nor a list file")
    if not found:
        raise InputError(f"calibration data {root} holds no {sorted(suffixes)} files")
    return found


def sample(items: Sequence[T], count: int | None, seed: int) -> list[T]:
    """Up to ``count`` items drawn without replacement by ``seed`` (all when None)."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        raise InputError(f"calibration count must be positive, got {count}")
    picks = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    return [items[i] for i in sorted(picks)]


def files_sha256(paths: Sequence[Path]) -> str:
    """One hash over the selected files' names and bytes (the calibration record)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
