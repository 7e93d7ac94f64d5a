"""FER2013 (Goodfellow et al. 2013, the Kaggle ICML 2013 challenge): one CSV, pixels inline.

Layout of ``fer2013.csv``: a header with ``emotion`` (0-6), ``pixels`` (2304 space-separated
grey values 0-255, a 48 x 48 face, row-major) and ``Usage`` (Training, PublicTest or
PrivateTest). The challenge's ``train.csv`` has no Usage column; it reads too, but then
``split`` cannot be used. Header names are stripped (the ``icml_face_data.csv`` copy writes
``" Usage"``). Emotion codes map to :data:`FER2013_LABELS`, the order of the ``face-fer7``
family: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.

Samples have no file (``paths == ()``); ``Sample.image`` holds the (48, 48) uint8 face.
``split`` is a Usage value (case-insensitive); None keeps every row.
"""

from __future__ import annotations

import warnings

import numpy as np

from edge_sdk.datasets._io import csv_rows, integer
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_USAGES = ("Training", "PublicTest", "PrivateTest")
FER2013_SIZE = 48


def _pixels(text: str, where: str) -> np.ndarray:
    """The (48, 48) uint8 face of a ``pixels`` field (np.fromstring's text mode: ~6x faster
    than splitting into Python strings, which matters for 35,887 rows)."""
    size = FER2013_SIZE * FER2013_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # NumPy < 2.3 warns on bad text
        try:
            array = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise InputError(f"{where}: pixels holds a value that is not an integer") from None
    if array.size != size:
        raise InputError(f"{where}: pixels has {array.size} values, expected {size}")
    if array.min() < 0 or array.max() > 255:
        raise InputError(f"{where}: pixels outside 0..255")
    return array.astype(np.uint8).reshape(FER2013_SIZE, FER2013_SIZE)


def _read_fer2013(request: ReadRequest) -> list[Sample]:
    path = request.path
    usages = {u.lower(): u for u in FER2013_USAGES}
    wanted = None
    if request.split is not None:
        wanted = usages.get(request.split.strip().lower())
        if wanted is None:
            raise InputError(
                f"FER2013 split must be one of {list(FER2013_USAGES)}, got {request.split!r}"
            )
    samples = []
    for line, row in csv_rows(path, ("emotion", "pixels"), "FER2013 CSV"):
        where = f"{path}:{line}"
        usage = row.get("Usage")
        if usage is not None:
            usage = usages.get(usage.strip().lower())
            if usage is None:
                raise InputError(
                    f"{where}: Usage {row['Usage']!r} is not one of {list(FER2013_USAGES)}"
                )
        elif wanted is not None:
            raise InputError(
                f"{path}:1: split {request.split!r} asked but the CSV has no Usage column"
            )
        if wanted is not None and usage != wanted:
            continue
        code = integer(row["emotion"], "emotion", where)
        if not 0 <= code < len(FER2013_LABELS):
            raise InputError(f"{where}: emotion {code} outside 0..{len(FER2013_LABELS) - 1}")
        samples.append(
            Sample(
                paths=(),
                source=where,
                native=FER2013_LABELS[code],
                image=_pixels(row["pixels"], where),
                split=usage,
            )
        )
    return samples


FER2013 = register_format(
    DatasetFormat(
        name="fer2013",
        description="FER2013 CSV: emotion, pixels (48x48 inline), Usage",
        read=_read_fer2013,
        labels=FER2013_LABELS,
    )
)
