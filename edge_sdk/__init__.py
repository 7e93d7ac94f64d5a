"""edge-sdk: ship emotion-recognition models to robots and kiosks.

``edge_sdk.load()`` returns a :class:`~edge_sdk.api.Recognizer` whose ``predict`` runs the
bundle on the best backend this device offers.
"""

from edge_sdk.errors import (
    BackendError,
    BundleError,
    DeviceError,
    EdgeSDKError,
    ExportError,
    InputError,
    ManifestError,
    WeightsError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BundleError",
    "DeviceError",
    "EdgeSDKError",
    "ExportError",
    "InputError",
    "ManifestError",
    "WeightsError",
    "__version__",
    "load",
]


def load(*args, **kwargs):
    """Open a bundle (default: the built-in face bundle) and return a Recognizer."""
    from edge_sdk.api import load as _load

    return _load(*args, **kwargs)
