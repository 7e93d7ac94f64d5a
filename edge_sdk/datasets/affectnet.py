"""AffectNet annotation reader: the published CSV layout -> face boxes with valence/arousal.

Columns (the manually annotated ``training.csv`` / ``validation.csv``): subDirectory_filePath,
face_x, face_y, face_width, face_height, facial_landmarks ("x1;y1;x2;y2;..."), expression
(0-10, see :data:`AFFECTNET_EXPRESSIONS`), valence, arousal (in [-1, 1]; -2 marks "no valid
rating", as for No-Face images). Only the text is read (no image decoding, no torch), and any
problem is an :class:`InputError` naming the file and line, because a silently skipped row
would bias the Otsu split of the CAF family.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
INVALID_RATING = -2.0


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


def _number(text: str, column: str, where: str, kind: type) -> float | int:
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        raise InputError(f"{where}: column {column!r} is not a number: {text!r}") from None


def _parse_row(row: dict[str, str], path: Path, line: int) -> AffectNetRecord:
    where = f"{path}:{line}"
    box_columns = ("face_x", "face_y", "face_width", "face_height")
    box = tuple(int(_number(row[c], c, where, int)) for c in box_columns)
    if box[2] <= 0 or box[3] <= 0:
        raise InputError(f"{where}: face box has non-positive size {box[2]}x{box[3]}")
    marks = row["facial_landmarks"].strip()
    landmarks = tuple(
        float(_number(v, "facial_landmarks", where, float)) for v in marks.split(";") if v.strip()
    )
    if len(landmarks) % 2:
        raise InputError(f"{where}: facial_landmarks has an odd count ({len(landmarks)})")
    expression = int(_number(row["expression"], "expression", where, int))
    if not 0 <= expression < len(AFFECTNET_EXPRESSIONS):
        raise InputError(f"{where}: expression {expression} outside 0..10")
    valence = float(_number(row["valence"], "valence", where, float))
    arousal = float(_number(row["arousal"], "arousal", where, float))
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
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read AffectNet CSV {path}: {exc}") from exc
    records = []
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in AFFECTNET_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path}:1: AffectNet CSV lacks columns {missing} (header {header})")
        for row in reader:
            if any(row.get(c) is None for c in AFFECTNET_COLUMNS):
                raise InputError(f"{path}:{reader.line_num}: row has fewer fields than the header")
            record = _parse_row(row, path, reader.line_num)
            if valid_valence_arousal_only and not record.has_valence_arousal:
                continue
            records.append(record)
    return tuple(records)


def valence_arousal(records: tuple[AffectNetRecord, ...]) -> np.ndarray:
    """(n, 2) float32 targets in [-1, 1], in record order."""
    return np.asarray([(r.valence, r.arousal) for r in records], dtype=np.float32).reshape(-1, 2)
