"""Per-track smoothing of emotion probabilities: one frame's argmax flickers, a face's does not.

A face's expression changes over hundreds of milliseconds while the classifier's answer on
consecutive frames jitters with pose, blur and the box. :class:`EmotionSmoother` keeps, per
track id, either

* ``"ema"``: an exponential moving average, ``s = alpha * p + (1 - alpha) * s`` (the first
  vector starts it), ``alpha`` defaulting to ``2 / (window + 1)``, the EMA whose centre of
  mass matches a ``window``-frame mean; or
* ``"mean"``: the mean of the last ``window`` probability vectors; or
* ``"none"``: the frame's own vector.

Both averages of probability vectors are probability vectors, so no renormalisation is
needed; the label is the argmax of the smoothed vector. The smoothing counts observations
(frames on which the face was classified), not seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import InputError

METHODS = ("ema", "mean", "none")


@dataclass(frozen=True)
class SmoothingConfig:
    """How probabilities are smoothed per track (module docs give the formulas).

    Attributes:
        method: ``"ema"``, ``"mean"`` or ``"none"``.
        window: frames the average spans (``"mean"``: the last ``window`` vectors;
            ``"ema"``: ``alpha = 2 / (window + 1)`` unless ``alpha`` is given).
        alpha: the EMA's weight of the newest vector, in (0, 1]; overrides ``window``.
    """

    method: str = "ema"
    window: int = 5
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"smoothing method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise InputError(f"smoothing window must be an integer >= 1, got {self.window!r}")
        if self.alpha is not None and not (np.isfinite(self.alpha) and 0 < self.alpha <= 1):
            raise InputError(f"smoothing alpha must be in (0, 1], got {self.alpha!r}")

    @property
    def weight(self) -> float:
        """The EMA's weight of the newest vector."""
        return self.alpha if self.alpha is not None else 2.0 / (self.window + 1)


class EmotionSmoother:
    """Smoothed probabilities per track id; :meth:`forget` a track when it ends."""

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._ema: dict[int, np.ndarray] = {}
        self._recent: dict[int, deque[np.ndarray]] = {}

    def update(self, track_id: int, probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
        """Add this frame's vector for ``track_id``; return the smoothed vector."""
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
            raise InputError(
                f"track {track_id}: probabilities must be a non-empty 1-D vector of finite "
                f"values >= 0, got shape {p.shape}"
            )
        previous = self._ema.get(track_id)
        if previous is None and track_id in self._recent:
            previous = self._recent[track_id][-1]
        if previous is not None and previous.shape != p.shape:
            raise InputError(
                f"track {track_id}: {p.size} probabilities after {previous.size} on earlier "
                "frames (the label set changed)"
            )
        method = self.config.method
        if method == "none":
            return p.copy()
        if method == "mean":
            recent = self._recent.setdefault(track_id, deque(maxlen=self.config.window))
            recent.append(p)
            return np.mean(recent, axis=0)
        weight = self.config.weight
        smoothed = p if previous is None else weight * p + (1 - weight) * previous
        self._ema[track_id] = smoothed
        return smoothed.copy()

    def smooth(
        self, track_id: int, probabilities: dict[str, float]
    ) -> tuple[str | None, dict[str, float]]:
        """(label, {label: p}) smoothed, in the given label order; (None, {}) for none."""
        if not probabilities:
            return None, {}
        labels = list(probabilities)
        smoothed = self.update(track_id, [probabilities[k] for k in labels])
        return labels[int(np.argmax(smoothed))], {
            k: float(v) for k, v in zip(labels, smoothed, strict=True)
        }

    def forget(self, track_id: int) -> None:
        """Drop a finished track's state (ids are never reused, so this only frees memory)."""
        self._ema.pop(track_id, None)
        self._recent.pop(track_id, None)

    @property
    def tracks(self) -> tuple[int, ...]:
        """Track ids with state held."""
        return tuple(sorted(set(self._ema) | set(self._recent)))
