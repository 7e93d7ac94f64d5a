"""edge-sdk: ship emotion-recognition models to robots and kiosks.

``edge_sdk.load()`` returns a :class:`~edge_sdk.api.Recognizer` whose ``predict`` runs the
bundle on the best backend this device offers.
"""

from typing import Any

from edge_sdk.errors import (
    BackendError,
    BundleError,
    CalibrationError,
    ClosedError,
    DeviceError,
    EdgeSDKError,
    ExportError,
    InputError,
    ManifestError,
    QueueFullError,
    ServerError,
    SidecarError,
    SidecarProtocolError,
    SidecarTimeoutError,
    SidecarUnavailableError,
    WeightsError,
)
from edge_sdk.version import __version__

# Result and input types, imported on first use: ``import edge_sdk`` stays light (the
# pipelines pull in OpenCV and ONNX Runtime).
_LAZY = {
    "Recognizer": "edge_sdk.api",
    "Prediction": "edge_sdk.api",
    "Face": "edge_sdk.pipelines.face",
    "FacePrediction": "edge_sdk.pipelines.face",
    "SceneInput": "edge_sdk.pipelines.scene",
    "ScenePrediction": "edge_sdk.pipelines.scene",
    "AudioPrediction": "edge_sdk.pipelines.audio_video",
    "VideoPrediction": "edge_sdk.pipelines.video",
    "Utterance": "edge_sdk.pipelines.dialog",
    "DialogPrediction": "edge_sdk.pipelines.dialog",
    "RemoteRecognizer": "edge_sdk.serving.client",
}

__all__ = [
    "BackendError",
    "BundleError",
    "CalibrationError",
    "ClosedError",
    "DeviceError",
    "EdgeSDKError",
    "ExportError",
    "InputError",
    "ManifestError",
    "QueueFullError",
    "ServerError",
    "SidecarError",
    "SidecarProtocolError",
    "SidecarTimeoutError",
    "SidecarUnavailableError",
    "WeightsError",
    "__version__",
    "connect",
    "load",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """The public result/input types of :data:`_LAZY`, imported when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")


def load(*args, **kwargs):
    """Open a bundle (default: the built-in face bundle) and return a Recognizer."""
    from edge_sdk.api import load as _load

    return _load(*args, **kwargs)


def connect(*args, **kwargs):
    """Reach an ``edge-sdk serve`` server; its ``predict`` is ``load()``'s, run remotely."""
    from edge_sdk.serving.client import connect as _connect

    return _connect(*args, **kwargs)
