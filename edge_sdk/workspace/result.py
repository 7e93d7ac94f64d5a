"""The workspace's result: one frozen record of arrays, rebuilt and checked from raw arrays.

Why a module of its own: it is the contract between the workspace and the sidecar. The
in-process workspace returns it; the sidecar sends its arrays and the client rebuilds it from a
reply (:meth:`WorkspaceResult.from_arrays` checks every shape first), bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.workspace.names import LEVELS

RESULT_ARRAYS = (
    "probabilities",
    "level_probabilities",
    "initial_probabilities",
    "losses",
    "removed",
    "kept",
    "lambdas",
    "delta",
)


@dataclass(frozen=True)
class WorkspaceResult:
    """What :meth:`Workspace.update` returns (shapes: :mod:`edge_sdk.workspace`; float64/int64)."""

    probabilities: np.ndarray
    level_probabilities: np.ndarray
    initial_probabilities: np.ndarray
    losses: np.ndarray
    removed: np.ndarray
    kept: np.ndarray
    lambdas: np.ndarray
    delta: np.ndarray
    levels: tuple[str, ...] = LEVELS
    labels: tuple[str, ...] | None = None

    def removed_names(self, row: int) -> tuple[str, ...]:
        """Names of the levels the competition removed from sample ``row``, in order."""
        return tuple(self.levels[int(i)] for i in self.removed[row])

    def kept_name(self, row: int) -> str:
        """Name of the level left in Z for sample ``row``."""
        return self.levels[int(self.kept[row])]

    def label(self, row: int) -> str | int:
        """The final predicted class of sample ``row`` (its name when labels are known)."""
        index = int(np.argmax(self.probabilities[row]))
        return self.labels[index] if self.labels else index

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (what the sidecar sends back)."""
        return {name: getattr(self, name) for name in RESULT_ARRAYS}

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        levels: Sequence[str] = LEVELS,
        labels: Sequence[str] | None = None,
    ) -> WorkspaceResult:
        """Rebuild a result, checking that every array is present and the shapes agree."""
        missing = [n for n in RESULT_ARRAYS if n not in arrays]
        if missing:
            raise InputError(f"workspace result lacks {missing}")
        a = {n: np.asarray(arrays[n]) for n in RESULT_ARRAYS}
        count = len(levels)
        if a["probabilities"].ndim != 2:
            raise InputError(f"probabilities must be (B, k), got {a['probabilities'].shape}")
        batch, k = a["probabilities"].shape
        expected = {
            "level_probabilities": (batch, count, k),
            "initial_probabilities": (batch, count, k),
            "losses": (batch, count),
            "removed": (batch, count - 1),
            "kept": (batch,),
            "lambdas": (batch, count - 1, count),
        }
        for name, shape in expected.items():
            if a[name].shape != shape:
                raise InputError(f"result array {name} has shape {a[name].shape}, not {shape}")
        if a["delta"].ndim != 3 or a["delta"].shape[:2] != (batch, k):
            raise InputError(f"result array delta has shape {a['delta'].shape}, not (B, k, d)")
        for name in ("removed", "kept"):
            if a[name].size and not (
                np.issubdtype(a[name].dtype, np.integer)
                and a[name].min() >= 0
                and a[name].max() < count
            ):
                raise InputError(f"result array {name} holds no valid level indices")
        return cls(**a, levels=tuple(levels), labels=tuple(labels) if labels else None)
