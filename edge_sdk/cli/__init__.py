"""The ``edge-sdk`` command line (the console script runs :func:`main`).

One module per group of commands, registered on :data:`app` by :mod:`edge_sdk.cli.commands`:

* :mod:`~edge_sdk.cli.base`: the typer app, the ``check`` group, one-line errors, ``main``;
* :mod:`~edge_sdk.cli.predict` (+ :mod:`~edge_sdk.cli.render`, its tables): ``predict``;
* :mod:`~edge_sdk.cli.bundles`: ``devices``, ``export``, ``train``;
* :mod:`~edge_sdk.cli.serving`: ``serve``, ``sidecar``;
* :mod:`~edge_sdk.cli.checks`: ``verify``, ``bench``, ``check parity|latency|accuracy``;
* :mod:`~edge_sdk.cli.deploy`: ``calibrate``, ``build``, ``export-triton``, ``doctor``;
* :mod:`~edge_sdk.cli.common`: what several commands share.

Errors the SDK raises on purpose (any EdgeSDKError) and OS errors are printed as one red
line and exit with code 2, from every command; anything else is a bug and keeps its
traceback.
"""

from edge_sdk.cli.base import main
from edge_sdk.cli.commands import app

__all__ = ["app", "main"]
