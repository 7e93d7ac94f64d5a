"""Generic folder-per-class layout: ``<root>/[<split>/]<class>/<file>`` -> labelled files.

The class names are the folder names (matched to ``labels`` case-insensitively and through
the synonym table, so ``Happy/`` meets a model's ``happy``); with ``labels=None`` the label
order is the sorted folder names that hold files. Only files with a known media suffix are
listed (images, videos, audio by default; ``extensions=`` narrows it); hidden entries and
``__MACOSX``-style debris are skipped, loose files beside the class folders are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_sdk.datasets._io import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    child_dir,
    files_with,
    require_dir,
    visible_children,
)
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS + AUDIO_EXTENSIONS


def class_folder_files(
    folder: Path,
    extensions: Sequence[str],
    vocabulary: Sequence[str] | None = None,
    what: str = "class",
) -> list[tuple[Path, str]]:
    """``(file, class folder name)`` for every media file in ``folder/<class>/``, sorted.

    Args:
        folder: the folder holding one sub-folder per class.
        extensions: suffixes to keep (any case).
        vocabulary: allowed class names (any case); None accepts every folder.
        what: the data set's name, for messages.

    Raises:
        InputError: ``folder`` is missing, has no class folders, or one not in ``vocabulary``.
    """
    require_dir(folder, f"{what} folder")
    allowed = None if vocabulary is None else {v.lower() for v in vocabulary}
    class_dirs = [p for p in visible_children(folder) if p.is_dir()]
    if not class_dirs:
        raise InputError(f"{folder} has no class sub-folders")
    found: list[tuple[Path, str]] = []
    for class_dir in class_dirs:
        if allowed is not None and class_dir.name.lower() not in allowed:
            raise InputError(
                f"unknown {what} class folder {class_dir}; expected one of {list(vocabulary or ())}"
            )
        found.extend((path, class_dir.name) for path in files_with(class_dir, extensions))
    return found


def split_folder(root: Path, split: str, what: str) -> Path:
    """``root/<split>`` in any letter case, or an error listing the folders there."""
    folder = child_dir(require_dir(root, f"{what} root"), split)
    if folder is None:
        found = sorted(p.name for p in visible_children(root) if p.is_dir())
        raise InputError(f"{root} has no {split}/ folder (found {found})")
    return folder


def _read_folder(request: ReadRequest) -> list[Sample]:
    root = request.path
    folder = split_folder(root, request.split, "data set") if request.split else root
    extensions = request.extensions or MEDIA_EXTENSIONS
    files = class_folder_files(folder, extensions, what="data set")
    if not files:
        raise InputError(f"no {sorted(set(extensions))} files in the class folders of {folder}")
    return [
        Sample(paths=(path,), source=str(path), native=name, split=request.split)
        for path, name in files
    ]


FOLDER = register_format(
    DatasetFormat(
        name="folder",
        description="generic <root>/[<split>/]<class>/<file>; class = folder name",
        read=_read_folder,
    )
)
