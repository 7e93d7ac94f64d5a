"""``python -m edge_sdk.sidecar``: serve a CocoER workspace on a Unix socket until stopped.

The command line that :class:`~edge_sdk.sidecar.SidecarProcess` runs (``edge-sdk sidecar`` is
the user-facing twin). It loads the workspace from a bundle directory or a ``Workspace.save``
file and serves it to processes of this user only; it stops on SIGTERM/SIGINT, a ``shutdown``
request or, with ``--parent-pid``, when its parent dies. Exit code 2: an edge-sdk error (logged).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edge_sdk.errors import EdgeSDKError
from edge_sdk.sidecar.protocol import DEFAULT_MAX_PAYLOAD
from edge_sdk.sidecar.server import DEFAULT_MAX_CONNECTIONS, DEFAULT_WORKERS, serve

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_sdk.sidecar``: what :class:`SidecarProcess` runs."""
    parser = argparse.ArgumentParser(prog="python -m edge_sdk.sidecar", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path)
    source.add_argument("--weights", type=Path)
    parser.add_argument("--backend", default="torch", choices=("torch", "numpy"))
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument("--io-timeout", type=float, default=10.0)
    parser.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sidecar %(levelname)s %(message)s")
    try:
        serve(
            args.socket,
            bundle=args.bundle,
            weights=args.weights,
            backend=args.backend,
            idle_timeout=args.idle_timeout,
            io_timeout=args.io_timeout,
            max_payload=args.max_payload,
            parent_pid=args.parent_pid,
            threads=args.threads or None,
            max_connections=args.max_connections,
            workers=args.workers,
        )
    except EdgeSDKError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 2
    return 0
