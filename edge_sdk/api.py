"""Public entry points: ``load()`` and the Recognizer it returns."""

from __future__ import annotations

import os
from pathlib import Path

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, DeviceProbe
from edge_sdk.errors import BundleError, InputError
from edge_sdk.pipelines.face import FacePipeline, FacePrediction
from edge_sdk.preprocess.image import ImageInput

_PIPELINES = {"face": FacePipeline}


class Recognizer:
    """Runs a bundle's pipeline on the best backend of this device.

    Sessions are created once, here; ``predict`` may be called from several threads
    (ONNX Runtime sessions are thread-safe, the PyTorch reference serialises its calls).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        device: DeviceInfo | None = None,
        *,
        backend: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = device or DeviceProbe().probe()
        kind = bundle.manifest.config.get("pipeline")
        if kind not in _PIPELINES:
            raise BundleError(
                f"bundle {bundle.manifest.family} declares pipeline {kind!r}; "
                f"this SDK runs {sorted(_PIPELINES)}"
            )
        self._face = _PIPELINES[kind](bundle, self.device, backend=backend, precision=precision)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels in the order of every probability vector."""
        return self.bundle.manifest.labels

    @property
    def backends(self) -> dict[str, str]:
        """Which backend/precision runs each graph."""
        return dict(self._face.backends)

    def predict(self, face: ImageInput | None = None, *, color: str = "rgb") -> FacePrediction:
        """Detect and classify every face in ``face`` (path, bytes or array).

        Args:
            face: image file path, encoded bytes, or an array (gray, RGB/BGR, RGBA/BGRA;
                uint8, uint16 or float in [0, 1]).
            color: channel order of 3/4-channel arrays, ``"rgb"`` or ``"bgr"`` (OpenCV).
        """
        if face is None:
            raise InputError("predict() needs an input: predict(face=image)")
        return self._face.predict(face, color=color)


def load(
    bundle: str | os.PathLike[str] | ModelBundle | None = None,
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: DeviceInfo | None = None,
) -> Recognizer:
    """Open a bundle directory (default: the built-in face-fer7 bundle) as a Recognizer.

    Args:
        bundle: bundle directory or opened ModelBundle; None for the default bundle.
        backend: force a backend by name (e.g. ``"ort-cpu"``, ``"torch"``); None picks.
        precision: require a precision (``"fp32"``, ``"int8"``); never silently changed.
        device: a probed DeviceInfo; None probes this machine.
    """
    if bundle is None:
        from edge_sdk.defaults import default_bundle

        opened = default_bundle()
    elif isinstance(bundle, ModelBundle):
        opened = bundle
    else:
        opened = ModelBundle.load(Path(bundle))
    return Recognizer(opened, device, backend=backend, precision=precision)
