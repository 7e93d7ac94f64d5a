"""AFEW (EmotiW) clip lister: ``<root>/<Train|Val>/<Emotion>/<clip>.avi`` -> labelled clips.

Only lists files (no decoding), so it needs neither torch nor a video library. Emotion
folders are matched case-insensitively to :data:`AFEW_LABELS`; an unknown folder is an error
rather than silently skipped, because a typo there would quietly drop a whole class.

Registered as the ``afew`` format of :func:`edge_sdk.datasets.read_dataset`: ``split`` is
"Train" or "Val" (None reads both that exist); labels are :data:`AFEW_LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_sdk.datasets._io import child_dir
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

AFEW_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
AFEW_SPLITS = ("Train", "Val")
VIDEO_EXTENSIONS = (".avi",)


@dataclass(frozen=True)
class AfewClip:
    """One labelled clip: its file, class index into AFEW_LABELS, class name and split."""

    path: Path
    label: int
    emotion: str
    split: str


def list_afew(
    root: str | Path, split: str = "Train", extensions: tuple[str, ...] = VIDEO_EXTENSIONS
) -> tuple[AfewClip, ...]:
    """Every clip of ``split``, sorted by (label, file name).

    Args:
        root: folder holding ``Train/`` and ``Val/``.
        split: "Train" or "Val" (any case); the unlabelled Test set has no emotion folders.
        extensions: clip file suffixes to keep (case-insensitive); other files are ignored.

    Raises:
        InputError: missing root or split, an unknown emotion folder, or no clips at all.
    """
    root = Path(root)
    if split.lower() not in {s.lower() for s in AFEW_SPLITS}:
        raise InputError(f"AFEW split must be one of {AFEW_SPLITS}, got {split!r}")
    if not root.is_dir():
        raise InputError(f"AFEW root {root} is not a folder")
    folder = child_dir(root, split)
    if folder is None:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(f"{root} has no {split}/ folder (found {found})")
    suffixes = {e.lower() for e in extensions}
    clips: list[AfewClip] = []
    for emotion_dir in sorted(folder.iterdir()):
        if not emotion_dir.is_dir() or emotion_dir.name.startswith("."):
            continue
        emotion = emotion_dir.name.lower()
        if emotion not in AFEW_LABELS:
            raise InputError(
                f"unknown AFEW emotion folder {emotion_dir}; expected one of "
                f"{[e.capitalize() for e in AFEW_LABELS]}"
            )
        clips.extend(
            AfewClip(path, AFEW_LABELS.index(emotion), emotion, folder.name)
            for path in sorted(emotion_dir.iterdir())
            if path.is_file() and path.suffix.lower() in suffixes
        )
    if not clips:
        raise InputError(f"no {sorted(suffixes)} clips under {folder}")
    return tuple(sorted(clips, key=lambda c: (c.label, c.path.name)))


def _read_afew(request: ReadRequest) -> list[Sample]:
    root = request.path
    if request.split is not None:
        splits: tuple[str, ...] = (request.split,)
    else:
        splits = tuple(s for s in AFEW_SPLITS if child_dir(root, s) is not None)
        if not splits:
            list_afew(root, AFEW_SPLITS[0])  # raises the "not a folder" / "no Train/" error
    extensions = request.extensions or VIDEO_EXTENSIONS
    return [
        Sample(paths=(clip.path,), source=str(clip.path), native=clip.emotion, split=clip.split)
        for split in splits
        for clip in list_afew(root, split, extensions)
    ]


AFEW = register_format(
    DatasetFormat(
        name="afew",
        description="AFEW (EmotiW) <root>/<Train|Val>/<Emotion>/<clip>.avi",
        read=_read_afew,
        labels=AFEW_LABELS,
    )
)
