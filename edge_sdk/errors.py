"""One exception tree for the whole SDK.

Callers catch :class:`EdgeSDKError` for anything the SDK raises on purpose, or one of
its subclasses to react to a specific kind of failure (bad input vs. bad model file vs.
missing hardware). Library code never exits the process or prints; it raises these.
"""

from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class of every error the SDK raises deliberately."""


class InputError(EdgeSDKError, ValueError):
    """The caller's input (image, audio, dialog, boxes, shapes) cannot be used as given."""


def no_family_for(modality: str, families: list[str], where: str = "loaded") -> InputError:
    """The error for ``predict(<modality>=...)`` when no bundle serves that modality, naming
    the bundles there are (``where``: "loaded" here, or "served by URL" through a server)."""
    verb = "load" if where == "loaded" else "serve"
    return InputError(
        f"no {modality} family is {where} (bundles: {', '.join(families)}); {verb} one to "
        f"use predict({modality}=...)"
    )


class BundleError(EdgeSDKError):
    """A model bundle is malformed, tampered with, of an unknown schema or escapes its folder."""


class ManifestError(BundleError):
    """The manifest itself is malformed or of an unsupported schema version."""


class DeviceError(EdgeSDKError):
    """The requested device or accelerator does not exist or cannot be probed."""


class BackendError(EdgeSDKError):
    """No runtime backend can run the artifact, or a requested backend is unavailable."""


class ExportError(EdgeSDKError):
    """Exporting a model to a deployable format failed or produced a graph that disagrees."""


class WeightsError(EdgeSDKError):
    """Pretrained weights are missing, unreadable or do not match the architecture."""


class SidecarError(EdgeSDKError):
    """The workspace sidecar (a separate local process) failed to answer a request properly."""


class SidecarUnavailableError(SidecarError):
    """The sidecar process is not running, died, or closed the connection mid-request."""


class SidecarTimeoutError(SidecarUnavailableError):
    """The sidecar did not answer within the timeout (hung, stopped or overloaded)."""


class SidecarProtocolError(SidecarError):
    """A sidecar message is malformed, oversized or of an unsupported protocol version."""


class SidecarBusyError(SidecarUnavailableError):
    """The sidecar is alive but at its connection limit (the client backed off and retried)."""


class SidecarAuthError(SidecarError):
    """The sidecar's peer runs as another user, or its socket sits where another user could
    replace it: the peer is not trusted (restarting would not help)."""


class QueueFullError(EdgeSDKError):
    """Every worker of a Recognizer is busy and its waiting queue is full (after the timeout)."""


class CalibrationError(EdgeSDKError):
    """INT8 calibration cannot proceed (too little data) or its result failed the gate."""


class ClosedError(EdgeSDKError):
    """The object was closed (``Recognizer.close()`` or the end of its ``with`` block) and
    cannot run anything any more; open a new one."""


class ServerError(EdgeSDKError):
    """An edge-sdk server (``edge-sdk serve``, reached through ``edge_sdk.connect``) cannot
    be reached, or failed in a way that is not an error of the caller's input."""
