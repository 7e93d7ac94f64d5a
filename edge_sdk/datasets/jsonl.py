"""Generic JSON Lines: one JSON object per line, for data sets without a published layout.

Keys (unknown keys go to ``Sample.extra``)::

    {"path": "faces/001.jpg", "label": "happy"}                        single label
    {"paths": ["a.wav", "a.mp4"], "label": 3}                          index into labels=
    {"path": "scene.jpg", "labels": ["peace", "engagement"]}           multi-label
    {"path": "f.jpg", "valence": 0.4, "arousal": -0.1}                 regression only
    {"path": "u1.mp4", "label": "joy", "dialog_id": "7", "utterance_id": "0",
     "speaker": "Ross", "text": "Hi!", "start": 1.5, "end": 2.0, "split": "test",
     "box": [x1, y1, x2, y2]}

Relative paths are resolved against ``media_root``, else the JSONL file's folder. An integer
``label`` indexes the ``labels`` passed to :func:`read_dataset` (required then). A file either
uses ``label`` or ``labels`` throughout. With ``labels=("valence", "arousal")`` class labels
are not read. ``split`` keeps the records whose ``"split"`` equals it (a record without one is
then an error). With ``labels=None`` the label order is the sorted set of names in the file.
Blank lines and lines starting with ``//`` are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_sdk.datasets._io import text_lines
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

_KNOWN = {
    "path", "paths", "label", "labels", "valence", "arousal", "box", "dialog_id",
    "utterance_id", "speaker", "text", "start", "end", "split",
}  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _text(record: dict[str, Any], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f"{where}: {key!r} must be a string or an integer, got {value!r}")
    return str(value)


def _float(record: dict[str, Any], key: str, where: str, unit: bool = False) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if not _is_number(value) or (unit and not -1.0 <= value <= 1.0):
        span = " in [-1, 1]" if unit else ""
        raise InputError(f"{where}: {key!r} must be a number{span}, got {value!r}")
    return float(value)


def _label_name(value: Any, request: ReadRequest, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        if request.labels is None:
            raise InputError(f"{where}: integer label {value} needs labels= to say what it means")
        if not 0 <= value < len(request.labels):
            raise InputError(f"{where}: label {value} outside 0..{len(request.labels) - 1}")
        return request.labels[value]
    raise InputError(f"{where}: label must be a name or an integer index, got {value!r}")


def _paths(record: dict[str, Any], base: Path, where: str) -> tuple[Path, ...]:
    if "path" in record and "paths" in record:
        raise InputError(f"{where}: give 'path' or 'paths', not both")
    raw = [record["path"]] if "path" in record else record.get("paths")
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p for p in raw):
        raise InputError(f"{where}: needs 'path' (a string) or 'paths' (a list of strings)")
    return tuple(base / p for p in raw)


def _record(record: dict[str, Any], request: ReadRequest, base: Path, where: str) -> Sample:
    if "label" in record and "labels" in record:
        raise InputError(f"{where}: give 'label' or 'labels', not both")
    native: str | tuple[str, ...] | None = None
    if request.valence_arousal:
        pass  # class labels play no part in the regression task
    elif "label" in record:
        native = _label_name(record["label"], request, where)
    elif "labels" in record:
        if not isinstance(record["labels"], list):
            raise InputError(f"{where}: 'labels' must be a list")
        native = tuple(_label_name(v, request, where) for v in record["labels"])
    valence = _float(record, "valence", where, unit=True)
    arousal = _float(record, "arousal", where, unit=True)
    if (valence is None) != (arousal is None):
        raise InputError(f"{where}: give both valence and arousal or neither")
    if native is None and valence is None and not request.valence_arousal:
        raise InputError(f"{where}: no 'label', 'labels' or valence/arousal")
    box = record.get("box")
    if box is not None and not (
        isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)
    ):
        raise InputError(f"{where}: 'box' must be [x1, y1, x2, y2], got {box!r}")
    return Sample(
        paths=_paths(record, base, where),
        source=where,
        native=native,
        valence=valence,
        arousal=arousal,
        box=None if box is None else tuple(float(v) for v in box),
        dialog_id=_text(record, "dialog_id", where),
        utterance_id=_text(record, "utterance_id", where),
        speaker=_text(record, "speaker", where),
        text=_text(record, "text", where),
        start=_float(record, "start", where),
        end=_float(record, "end", where),
        split=_text(record, "split", where),
        extra={k: v for k, v in record.items() if k not in _KNOWN},
    )


def _read_jsonl(request: ReadRequest) -> list[Sample]:
    path = request.path
    base = request.media_root or path.parent
    samples = []
    for number, line in enumerate(text_lines(path, "JSONL file"), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
        sample = _record(record, request, base, where)
        if request.split is not None:
            if sample.split is None:
                raise InputError(f"{where}: split {request.split!r} asked but the record has none")
            if sample.split.lower() != request.split.strip().lower():
                continue
        samples.append(sample)
    return samples


JSONL = register_format(
    DatasetFormat(
        name="jsonl",
        description="generic JSON Lines: path(s), label/labels, optional valence/arousal",
        read=_read_jsonl,
        multi_label=None,
        valence_arousal=True,
    )
)
