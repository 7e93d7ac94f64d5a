"""CAER-S (static frames of CAER, Lee et al. 2019): ``<root>/<split>/<Emotion>/<frame>.png``.

The published archive has ``train/`` and ``test/`` (copies that carve a validation set add
``val/``), each with the folders Anger, Disgust, Fear, Happy, Neutral, Sad, Surprise. Folder
names are matched case-insensitively to :data:`CAER_S_LABELS` (the order of the
``scene-cocoer`` family's CAER-S vocabulary); any other folder is an error. ``split`` picks
one split folder; None reads every split folder present.
"""

from __future__ import annotations

from edge_sdk.datasets._io import IMAGE_EXTENSIONS, child_dir, require_dir
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.datasets.folder import class_folder_files, split_folder
from edge_sdk.errors import InputError

CAER_S_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
CAER_S_SPLITS = ("train", "val", "test")


def _read_caer_s(request: ReadRequest) -> list[Sample]:
    root = require_dir(request.path, "CAER-S root")
    if request.split is not None:
        folders = [split_folder(root, request.split, "CAER-S")]
    else:
        folders = [f for s in CAER_S_SPLITS if (f := child_dir(root, s)) is not None]
        if not folders:
            raise InputError(f"{root} has none of the CAER-S split folders {list(CAER_S_SPLITS)}")
    extensions = request.extensions or IMAGE_EXTENSIONS
    return [
        Sample(paths=(path,), source=str(path), native=name, split=folder.name.lower())
        for folder in folders
        for path, name in class_folder_files(folder, extensions, CAER_S_LABELS, "CAER-S")
    ]


CAER_S = register_format(
    DatasetFormat(
        name="caer-s",
        description="CAER-S <root>/<train|test>/<Emotion>/<frame>.png",
        read=_read_caer_s,
        labels=CAER_S_LABELS,
    )
)
