"""EMOTIC (Kosti et al. 2019) in the CSV layout of the widely used PyTorch port's converter.

EMOTIC is published as ``Annotations/Annotations.mat`` (MATLAB structs, one per image with a
``person`` array). Reading MATLAB files would need SciPy on the device, so the format read
here is the per-split CSV written by ``mat2py.py`` of github.com/Tandon-A/emotic, the
conversion most EMOTIC code starts from (the same script also writes the ``*_arr.npy`` crops).
One row per annotated person::

    Index,Folder,Filename,Image Size,BBox,Categorical_Labels,Continuous_Labels,Gender,Age
    0,mscoco/images,COCO_train2014_000000288841.jpg,"[640, 480]","[86, 58, 564, 628]",
        "['Disconnection', 'Doubt/Confusion']","[5, 3, 9]",Male,Adult

``BBox`` is the body box (x1, y1, x2, y2); ``Categorical_Labels`` a Python list of category
names (26 categories, :data:`EMOTIC_LABELS`, the ``scene-cocoer`` family's EMOTIC order);
``Continuous_Labels`` is [valence, arousal, dominance] on EMOTIC's 1-10 scale. For val/test
the converter writes the annotators' combined labels. Files are named ``train.csv``,
``val.csv``, ``test.csv``; ``path`` is one of them (its stem is the split) or the folder
holding them (``split`` picks one; None reads all present).

Samples: image ``<image root>/<Folder>/<Filename>`` where the image root is ``media_root``,
else ``emotic/`` beside the CSV's folder (the converter's ``<data_dir>/emotic``) or beside the
CSV, else the CSV's folder; ``native`` = the tuple of categories (multi-label); valence and
arousal rescaled linearly from 1..10 to [-1, 1] ((x - 5.5) / 4.5); the raw V, A, D, gender,
age and image size are in ``extra``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from edge_sdk.datasets._io import csv_rows, first_dir, require_dir
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

EMOTIC_LABELS = (
    "affection", "anger", "annoyance", "anticipation", "aversion", "confidence", "disapproval",
    "disconnection", "disquietment", "doubt/confusion", "embarrassment", "engagement", "esteem",
    "excitement", "fatigue", "fear", "happiness", "pain", "peace", "pleasure", "sadness",
    "sensitivity", "suffering", "surprise", "sympathy", "yearning",
)  # fmt: skip
EMOTIC_COLUMNS = (
    "Index", "Folder", "Filename", "Image Size", "BBox", "Categorical_Labels",
    "Continuous_Labels", "Gender", "Age",
)  # fmt: skip
EMOTIC_SPLITS = ("train", "val", "test")
SCALE = (1.0, 10.0)  # EMOTIC's continuous scale


def to_unit(value: float) -> float:
    """EMOTIC's 1..10 rating -> [-1, 1]."""
    low, high = SCALE
    return (value - (low + high) / 2) / ((high - low) / 2)


def _literal(text: str, column: str, where: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError(f"{where}: column {column!r} is not a Python list: {text!r}") from None


def _numbers(text: str, column: str, where: str, count: int | None) -> tuple[float, ...]:
    value = _literal(text, column, where)
    ok = isinstance(value, list | tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v == v for v in value
    )
    if not ok or (count is not None and len(value) != count):
        size = "" if count is None else f" of {count}"
        raise InputError(f"{where}: column {column!r} must be a list{size} numbers: {text!r}")
    return tuple(float(v) for v in value)


def _categories(text: str, where: str) -> tuple[str, ...]:
    value = _literal(text, "Categorical_Labels", where)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: column 'Categorical_Labels' must be a list of names: {text!r}")
    return tuple(value)


def _row_sample(row: dict[str, str], where: str, images: Path, split: str | None) -> Sample:
    box = _numbers(row["BBox"], "BBox", where, 4)
    if box[2] < box[0] or box[3] < box[1]:
        raise InputError(f"{where}: BBox {list(box)} has x2 < x1 or y2 < y1")
    vad = _numbers(row["Continuous_Labels"], "Continuous_Labels", where, None)
    if len(vad) not in (0, 3):
        raise InputError(f"{where}: Continuous_Labels must be [valence, arousal, dominance]")
    if any(not SCALE[0] <= v <= SCALE[1] for v in vad):
        raise InputError(f"{where}: Continuous_Labels {list(vad)} outside EMOTIC's 1..10")
    folder, filename = row["Folder"].strip(), row["Filename"].strip()
    if not folder or not filename:
        raise InputError(f"{where}: empty Folder or Filename")
    return Sample(
        paths=(images / folder / filename,),
        source=where,
        native=_categories(row["Categorical_Labels"], where),
        valence=to_unit(vad[0]) if vad else None,
        arousal=to_unit(vad[1]) if vad else None,
        box=(box[0], box[1], box[2], box[3]),
        split=split,
        extra={
            "vad": vad,
            "gender": row["Gender"].strip(),
            "age": row["Age"].strip(),
            "image_size": _numbers(row["Image Size"], "Image Size", where, 2),
        },
    )


def _csv_files(request: ReadRequest) -> list[Path]:
    path = request.path
    if not path.is_dir():
        if request.split is not None:
            raise InputError(f"{path} is one EMOTIC split; pass its folder to choose a split")
        return [path]
    require_dir(path, "EMOTIC annotation folder")
    if request.split is not None:
        if request.split.strip().lower() not in EMOTIC_SPLITS:
            raise InputError(
                f"EMOTIC split must be one of {list(EMOTIC_SPLITS)}, got {request.split!r}"
            )
        return [path / f"{request.split.strip().lower()}.csv"]
    files = [path / f"{s}.csv" for s in EMOTIC_SPLITS if (path / f"{s}.csv").is_file()]
    if not files:
        raise InputError(f"{path} has none of {[f'{s}.csv' for s in EMOTIC_SPLITS]}")
    return files


def _read_emotic(request: ReadRequest) -> list[Sample]:
    samples = []
    for csv_path in _csv_files(request):
        images = request.media_root or first_dir(
            (csv_path.parent.parent / "emotic", csv_path.parent / "emotic"), csv_path.parent
        )
        split = csv_path.stem.lower() if csv_path.stem.lower() in EMOTIC_SPLITS else None
        samples.extend(
            _row_sample(row, f"{csv_path}:{line}", images, split)
            for line, row in csv_rows(csv_path, EMOTIC_COLUMNS, "EMOTIC CSV")
        )
    return samples


EMOTIC = register_format(
    DatasetFormat(
        name="emotic",
        description="EMOTIC per-split CSV from Tandon-A/emotic mat2py.py (26 categories + VAD)",
        read=_read_emotic,
        labels=EMOTIC_LABELS,
        multi_label=True,
        valence_arousal=True,
    )
)
