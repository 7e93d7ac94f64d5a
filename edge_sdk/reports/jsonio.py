"""Check results as strict JSON: what scripts and CI read.

Python's ``json`` writes NaN and Infinity, which are not JSON; every non-finite float
becomes ``null`` here, numpy scalars and arrays become numbers and lists, dataclasses
dicts, tuples lists, paths strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.reports import ReportError


def to_jsonable(value: Any) -> Any:
    """A structure ``json.dumps(..., allow_nan=False)`` accepts."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def dumps(payload: Any) -> str:
    """Strict, stable JSON text (sorted keys, two-space indent)."""
    return json.dumps(to_jsonable(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as strict JSON; parent directories are created."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dumps(payload), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc}") from exc
    return target
