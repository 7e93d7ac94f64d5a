"""The workspace as a separate local process: a Unix-socket server, its client, a supervisor.

Why: the CocoER workspace's reference runs in PyTorch (spec section 1, step 7), but a device's
main process may not have torch. :class:`SidecarClient` imports neither torch nor
:mod:`edge_sdk.workspace`'s torch backend; the server (``edge-sdk sidecar`` or
``python -m edge_sdk.sidecar``) holds a :class:`~edge_sdk.workspace.Workspace`. The client's
``update(outputs)`` has the in-process signature and returns the same
:class:`~edge_sdk.workspace.WorkspaceResult`, bit for bit (arrays travel as raw bytes).

Wire format (:mod:`~edge_sdk.sidecar.protocol`, version 1): a 20-byte prefix, a JSON header
and the arrays' raw bytes; dtypes ``<f4``, ``<f8`` and ``<i8`` only, nothing is ever unpickled
or evaluated, and header (64 KiB), payload (64 MiB by default), array count, rank and every
array's extent are checked before anything is allocated. Requests: ``ping``, ``info``,
``update`` (the graphs' output arrays), ``shutdown``; replies: ``ok`` or ``error`` ({"type": an
``edge_sdk.errors`` class name, "message"}). A bad frame (magic, version, sizes, JSON) is
answered with an error and the connection is closed; an error inside ``update`` (e.g. a wrong
shape) is answered and the connection stays usable.

Trust: both sides check the peer's uid with ``SO_PEERCRED`` and refuse another user's process
(:class:`~edge_sdk.errors.SidecarAuthError`); the socket is created 0600, and its directory
must not be writable by other users unless it is sticky (like ``/tmp``) and the socket file
is ours (:func:`check_socket_location`).

Load: no thread per connection. Idle connections wait in one selector thread, requests run on
a few worker threads, at most ``max_connections`` (128) are open and a further one is answered
with a ``SidecarBusyError`` frame; the listen backlog is ``SOMAXCONN``.

Timeouts: the client gives each request one deadline (connect + send + receive); past it,
:class:`~edge_sdk.errors.SidecarTimeoutError`. A full connection queue (``EAGAIN``) and a
"busy" answer are retried with doubling back-off within that deadline, a refused connection a
few times within ~0.1 s; a dead server then gives
:class:`~edge_sdk.errors.SidecarUnavailableError` (refused / reset / EOF). The server drops
connections idle for ``idle_timeout`` and messages that take longer than ``io_timeout`` to
arrive. :class:`ManagedSidecar` starts the server as a child, restarts it only when it died or
fails a health ping (hung), and retries the (stateless, idempotent) request once.

Layout: :mod:`~edge_sdk.sidecar.protocol` (framing), :mod:`~edge_sdk.sidecar.trust` (peer uid,
socket location), :mod:`~edge_sdk.sidecar.connections` and :mod:`~edge_sdk.sidecar.server`
(the server), :mod:`~edge_sdk.sidecar.client`, :mod:`~edge_sdk.sidecar.managed` (supervision)
and :mod:`~edge_sdk.sidecar.command` (``python -m edge_sdk.sidecar``). Everything public is
importable from ``edge_sdk.sidecar``.
"""

from edge_sdk.sidecar.client import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    DEFAULT_TIMEOUT,
    REFUSED_RETRIES,
    SidecarClient,
)
from edge_sdk.sidecar.command import main
from edge_sdk.sidecar.managed import HEALTH_PINGS, ManagedSidecar, SidecarProcess
from edge_sdk.sidecar.protocol import (
    DEFAULT_MAX_PAYLOAD,
    DTYPES,
    MAGIC,
    MAX_ARRAYS,
    MAX_HEADER,
    MAX_NDIM,
    PREFIX,
    PROTOCOL_VERSION,
    REQUESTS,
    encode_message,
    read_message,
)
from edge_sdk.sidecar.server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WORKERS,
    LISTEN_BACKLOG,
    SidecarServer,
    load_workspace,
    serve,
)
from edge_sdk.sidecar.trust import check_peer_uid, check_socket_location, peer_uid

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKERS",
    "DTYPES",
    "HEALTH_PINGS",
    "LISTEN_BACKLOG",
    "MAGIC",
    "MAX_ARRAYS",
    "MAX_HEADER",
    "MAX_NDIM",
    "PREFIX",
    "PROTOCOL_VERSION",
    "REFUSED_RETRIES",
    "REQUESTS",
    "ManagedSidecar",
    "SidecarClient",
    "SidecarProcess",
    "SidecarServer",
    "check_peer_uid",
    "check_socket_location",
    "encode_message",
    "load_workspace",
    "main",
    "peer_uid",
    "read_message",
    "serve",
]
