"""AffectNet annotation reader: the published CSV layout -> face boxes with valence/arousal.

Columns (the manually annotated ``training.csv`` / ``validation.csv``): subDirectory_filePath,
face_x, face_y, face_width, face_height, facial_landmarks ("x1;y1;x2;y2;..."), expression
(0-10, see :data:`AFFECTNET_EXPRESSIONS`), valence, arousal (in [-1, 1]; -2 marks "no valid
rating", as for No-Face images). Only the text is read (no image decoding, no torch), and any
problem is an :class:`InputError` naming the file and line, because a silently skipped row
would bias the Otsu split of the CAF family.

Registered as the ``affectnet`` format of :func:`edge_sdk.datasets.read_dataset` (``path`` =
one CSV; its stem, e.g. "training", is the split). Class labels are expressions 0-7
(:data:`AFFECTNET_CLASSES`); 8-10 (none, uncertain, no-face) are not emotions and are left out
of classification. Images are ``<image root>/<subDirectory_filePath>`` where the image root is
``media_root``, else the first of ``Manually_Annotated_Images/`` beside the CSV or beside its
folder (the published tree), else the CSV's folder. Valence/arousal of -2 become None.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.datasets._io import csv_rows, first_dir, integer, number
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

AFFECTNET_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
AFFECTNET_EXPRESSIONS = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    "none",
    "uncertain",
    "no-face",
)
AFFECTNET_CLASSES = AFFECTNET_EXPRESSIONS[:8]  # the emotion categories
INVALID_RATING = -2.0
IMAGE_FOLDER = "Manually_Annotated_Images"


@dataclass(frozen=True)
class AffectNetRecord:
    """One annotated face: image path (relative to the image root), box, labels, CSV line."""

    path: str
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    landmarks: tuple[float, ...]  # x1, y1, x2, y2, ... (68 points in the release)
    expression: int
    valence: float
    arousal: float
    line: int

    @property
    def has_valence_arousal(self) -> bool:
        """False for rows the annotators marked as unratable (-2)."""
        return self.valence != INVALID_RATING and self.arousal != INVALID_RATING


def _landmarks(text: str, where: str) -> tuple[float, ...]:
    """``"x1;y1;x2;y2;..."`` -> floats. NumPy's text parser first (136 values a row, 287k rows:
    the per-value Python path took most of the read time); the slow path names the bad value."""
    marks = text.strip()
    if not marks:
        return ()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # NumPy < 2.3 warns on bad text
        try:
            values = np.fromstring(marks, dtype=np.float64, sep=";")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or not np.isfinite(values).all():
        return tuple(number(v, "facial_landmarks", where) for v in marks.split(";") if v.strip())
    return tuple(values.tolist())


def _parse_row(row: dict[str, str], path: Path, line: int) -> AffectNetRecord:
    where = f"{path}:{line}"
    box_columns = ("face_x", "face_y", "face_width", "face_height")
    box = tuple(integer(row[c], c, where) for c in box_columns)
    if box[2] <= 0 or box[3] <= 0:
        raise InputError(f"{where}: face box has non-positive size {box[2]}x{box[3]}")
    landmarks = _landmarks(row["facial_landmarks"], where)
    if len(landmarks) % 2:
        raise InputError(f"{where}: facial_landmarks has an odd count ({len(landmarks)})")
    expression = integer(row["expression"], "expression", where)
    if not 0 <= expression < len(AFFECTNET_EXPRESSIONS):
        raise InputError(f"{where}: expression {expression} outside 0..10")
    valence = number(row["valence"], "valence", where)
    arousal = number(row["arousal"], "arousal", where)
    for name, value in (("valence", valence), ("arousal", arousal)):
        if value != INVALID_RATING and not -1.0 <= value <= 1.0:
            raise InputError(f"{where}: {name} {value} outside [-1, 1] (and not -2)")
    name = row["subDirectory_filePath"].strip()
    if not name:
        raise InputError(f"{where}: empty subDirectory_filePath")
    return AffectNetRecord(name, box, landmarks, expression, valence, arousal, line)


def read_affectnet_csv(
    path: str | Path, *, valid_valence_arousal_only: bool = True
) -> tuple[AffectNetRecord, ...]:
    """Parse an AffectNet annotation CSV (header row required, extra columns ignored).

    Args:
        path: the CSV file.
        valid_valence_arousal_only: drop rows whose valence or arousal is -2 (unratable).

    Raises:
        InputError: unreadable file, missing columns (named, with the header's line), a short
            row or an unparsable value (file and line named).
    """
    path = Path(path)
    records = []
    for line, row in csv_rows(path, AFFECTNET_COLUMNS, "AffectNet CSV"):
        record = _parse_row(row, path, line)
        if valid_valence_arousal_only and not record.has_valence_arousal:
            continue
        records.append(record)
    return tuple(records)


def valence_arousal(records: tuple[AffectNetRecord, ...]) -> np.ndarray:
    """(n, 2) float32 targets in [-1, 1], in record order."""
    return np.asarray([(r.valence, r.arousal) for r in records], dtype=np.float32).reshape(-1, 2)


def _rating(value: float) -> float | None:
    return None if value == INVALID_RATING else value


def _read_affectnet(request: ReadRequest) -> list[Sample]:
    path = request.path
    if request.split is not None:
        raise InputError(
            "an AffectNet CSV is one split; pass training.csv or validation.csv as the path"
        )
    records = read_affectnet_csv(path, valid_valence_arousal_only=False)
    images = request.media_root or first_dir(
        (path.parent / IMAGE_FOLDER, path.parent.parent / IMAGE_FOLDER), path.parent
    )
    return [
        Sample(
            paths=(images / r.path,),
            source=f"{path}:{r.line}",
            native=AFFECTNET_EXPRESSIONS[r.expression],
            valence=_rating(r.valence),
            arousal=_rating(r.arousal),
            box=(r.box[0], r.box[1], r.box[0] + r.box[2], r.box[1] + r.box[3]),
            split=path.stem.lower(),
            extra={"landmarks": r.landmarks},
        )
        for r in records
    ]


AFFECTNET = register_format(
    DatasetFormat(
        name="affectnet",
        description="AffectNet manual annotations CSV (training.csv / validation.csv)",
        read=_read_affectnet,
        labels=AFFECTNET_CLASSES,
        ignored=AFFECTNET_EXPRESSIONS[8:],
        valence_arousal=True,
    )
)
