"""A constant-velocity Kalman filter over one face box, written for the stream tracker.

The state is the box centre and size with their rates, ``(cx, cy, w, h, vcx, vcy, vw, vh)``,
rates in pixels per *second*: the filter advances by the time between frame timestamps, so a
live stream that dropped frames predicts as far as the face really moved, not one frame's
worth. Noise is scaled by the box height (a near face moves more pixels than a far one), as
in SORT/DeepSORT, so one setting fits faces of every size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import InputError

_POSITION = slice(0, 4)


@dataclass(frozen=True)
class KalmanConfig:
    """Noise settings, all in box heights (``h``) so they fit faces of any size.

    Attributes:
        accel: standard deviation of the unmodelled acceleration of the centre, in h/s^2
            (white-acceleration model); the size axes get ``size_accel``.
        size_accel: the same for width and height (faces change size slower than they move).
        detect_noise: measurement noise of a detector box, in h (MTCNN jitters ~3-5%).
        follow_noise: measurement noise of a template-matched position, in h (the match
            is exact to ~1 px at the template's 40 px scale: trust it more than a box).
        velocity_std: prior uncertainty of a new track's velocity, in h/s.
    """

    accel: float = 20.0
    size_accel: float = 1.0
    detect_noise: float = 0.05
    follow_noise: float = 0.03
    velocity_std: float = 2.0

    def __post_init__(self) -> None:
        for name in ("accel", "size_accel", "detect_noise", "follow_noise", "velocity_std"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"KalmanConfig.{name} must be a finite number > 0, got {value!r}")


def to_state_box(box: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def to_corners(state: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h, ...) -> (x1, y1, x2, y2)."""
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class BoxKalman:
    """Kalman filter of one box: ``predict(dt)`` between frames, ``update`` on a measurement.

    Args:
        box: the first measurement, (x1, y1, x2, y2) pixels.
        config: noise settings.
    """

    def __init__(self, box: np.ndarray | tuple[float, ...], config: KalmanConfig) -> None:
        measured = to_state_box(box)
        if not (np.all(np.isfinite(measured)) and measured[2] > 0 and measured[3] > 0):
            raise InputError(f"a box needs x2 > x1 and y2 > y1 (finite), got {tuple(box)}")
        self.config = config
        self.x = np.concatenate([measured, np.zeros(4)])
        scale = measured[3]
        self.P = np.diag(
            [(config.detect_noise * scale) ** 2] * 4 + [(config.velocity_std * scale) ** 2] * 4
        )

    @property
    def box(self) -> np.ndarray:
        """The current estimate as (x1, y1, x2, y2)."""
        return to_corners(self.x)

    @property
    def velocity(self) -> np.ndarray:
        """Estimated rates (vcx, vcy, vw, vh) in pixels per second."""
        return self.x[4:].copy()

    def _scale(self) -> float:
        return max(float(self.x[3]), 1.0)

    def predict(self, dt: float) -> np.ndarray:
        """Advance the state by ``dt`` seconds (0: unchanged) and return the predicted box."""
        if dt < 0 or not np.isfinite(dt):
            raise InputError(f"time must not run backwards: dt={dt!r} s")
        if dt == 0:
            return self.box
        transition = np.eye(8)
        transition[_POSITION, 4:] = np.eye(4) * dt
        scale = self._scale()
        accel = np.array([self.config.accel] * 2 + [self.config.size_accel] * 2) * scale
        # white acceleration a ~ N(0, accel^2) acting for dt: G = (dt^2 / 2, dt) per axis
        noise = np.zeros((8, 8))
        for axis in range(4):
            g = np.array([dt * dt / 2, dt])
            block = np.outer(g, g) * accel[axis] ** 2
            idx = [axis, axis + 4]
            noise[np.ix_(idx, idx)] = block
        self.x = transition @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)  # a box never shrinks to nothing
        self.P = transition @ self.P @ transition.T + noise
        return self.box

    def update(self, box: np.ndarray | tuple[float, ...], noise: float | None = None) -> None:
        """Correct with a measured box (x1, y1, x2, y2); ``noise`` in box heights
        (default: the detector's)."""
        self._correct(to_state_box(box), np.arange(4), noise or self.config.detect_noise)

    def update_centre(self, cx: float, cy: float, noise: float | None = None) -> None:
        """Correct with a measured centre only (a template match says where, not how big)."""
        self._correct(np.array([cx, cy]), np.arange(2), noise or self.config.follow_noise)

    def _correct(self, z: np.ndarray, axes: np.ndarray, noise: float) -> None:
        if not np.all(np.isfinite(z)):
            raise InputError(f"a measurement must be finite, got {z.tolist()}")
        observe = np.zeros((axes.size, 8))
        observe[np.arange(axes.size), axes] = 1.0
        measure = np.eye(axes.size) * (noise * self._scale()) ** 2
        innovation = z - observe @ self.x
        s = observe @ self.P @ observe.T + measure
        gain = self.P @ observe.T @ np.linalg.inv(s)
        self.x = self.x + gain @ innovation
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        # Joseph form: stays symmetric positive definite after many updates
        keep = np.eye(8) - gain @ observe
        self.P = keep @ self.P @ keep.T + gain @ measure @ gain.T
