"""The sidecar server: one Workspace behind a Unix socket, and the process that runs it.

Why a module of its own: everything that answers requests lives here (listening, refusing
other users, dispatching ``ping``/``info``/``update``/``shutdown``, stopping on a signal, a
``shutdown`` request or the parent's death); :func:`serve` is what ``edge-sdk sidecar`` and
``python -m edge_sdk.sidecar`` run. A bad frame is answered with an error and its connection
closed; an error inside ``update`` is answered and the connection stays usable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import socketserver
import stat
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import (
    EdgeSDKError,
    InputError,
    SidecarAuthError,
    SidecarError,
    SidecarProtocolError,
)
from edge_sdk.sidecar.connections import Connections, send_nowait
from edge_sdk.sidecar.protocol import (
    DEFAULT_MAX_PAYLOAD,
    PROTOCOL_VERSION,
    REQUESTS,
    ClosedError,
    encode_message,
    error_fields,
    read_message,
)
from edge_sdk.sidecar.trust import check_peer, check_socket_location, check_socket_path

log = logging.getLogger(__name__)

LISTEN_BACKLOG = max(128, socket.SOMAXCONN)  # the kernel caps it at net.core.somaxconn
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_WORKERS = 4


class _UnixServer(socketserver.UnixStreamServer):
    """Accepts on the listening socket; every accepted connection goes to the owner's pool."""

    request_queue_size = LISTEN_BACKLOG
    owner: SidecarServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._admit(request)


class SidecarServer:
    """Serves one :class:`~edge_sdk.workspace.Workspace` on a Unix socket (mode 0600).

    Only processes of this server's user are served (their uid is checked with
    ``SO_PEERCRED``); the socket's directory must pass :func:`check_socket_location`.

    Args:
        workspace: the workspace to run (any backend; the sidecar's point is torch).
        socket_path: where to listen. A stale socket file (nobody listening) is replaced; a
            live one or a non-socket file raises :class:`SidecarError`.
        idle_timeout: seconds a connection may wait between messages.
        io_timeout: seconds a message may take to arrive once started, and to send a reply.
        max_payload: the largest payload accepted, in bytes.
        parent_pid: stop when this process is no longer our parent (the owner died).
        max_connections: connections open at once; more are answered "busy" and closed.
        workers: threads that read, run and answer requests (idle connections need none).
    """

    def __init__(
        self,
        workspace: Any,
        socket_path: str | os.PathLike[str],
        *,
        idle_timeout: float = 300.0,
        io_timeout: float = 10.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        parent_pid: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if max_connections < 1 or workers < 1:
            raise InputError(
                f"max_connections ({max_connections}) and workers ({workers}) must be >= 1"
            )
        self.workspace = workspace
        self.path = Path(socket_path)
        self.idle_timeout, self.io_timeout = float(idle_timeout), float(io_timeout)
        self.max_payload = int(max_payload)
        self.parent_pid = parent_pid
        self.max_connections, self.workers = int(max_connections), int(workers)
        self._info = {
            **workspace.info(),
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "max_payload": self.max_payload,
        }
        check_socket_path(self.path)
        check_socket_location(self.path)
        self._clear_stale_socket()
        previous = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            self._server = _UnixServer(str(self.path), socketserver.BaseRequestHandler)
        except OSError as exc:
            raise SidecarError(f"cannot listen on {self.path}: {exc}") from exc
        finally:
            os.umask(previous)
        self._server.owner = self
        self._inode = self.path.stat().st_ino
        self._stopped = threading.Event()
        self._connections: Connections | None = None

    def _clear_stale_socket(self) -> None:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise SidecarError(f"{self.path} exists and is not a socket; refusing to replace it")
        if info.st_uid != os.geteuid():
            raise SidecarAuthError(
                f"{self.path} is a socket of uid {info.st_uid}, not ours; refusing to use it"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(self.path))
        except OSError:
            try:
                self.path.unlink(missing_ok=True)  # stale: its server is gone
            except OSError as exc:
                raise SidecarError(f"cannot remove the stale socket {self.path}: {exc}") from exc
            return
        finally:
            probe.close()
        raise SidecarError(f"a sidecar is already listening on {self.path}")

    def _admit(self, sock: socket.socket) -> None:
        """A new connection: refuse another user's process, then hand it to the pool."""
        try:
            check_peer(sock, "client")
        except (SidecarAuthError, OSError) as exc:
            log.warning("refusing a connection: %s", exc)
            if isinstance(exc, SidecarAuthError):
                send_nowait(sock, encode_message("error", 0, error=error_fields(exc)))
            sock.close()
            return
        assert self._connections is not None
        self._connections.admit(sock)

    def _serve_message(self, sock: socket.socket) -> bool:
        """Read one message from a connection that has data, answer it; False: close it."""
        try:
            header, arrays = read_message(
                sock, time.monotonic() + self.io_timeout, max_payload=self.max_payload
            )
        except ClosedError:
            return False
        except SidecarProtocolError as exc:
            log.warning("closing a connection after a bad message: %s", exc)
            self._send(sock, encode_message("error", 0, error=error_fields(exc)))
            return False
        except (TimeoutError, OSError):
            return False  # too slow or gone: the client reconnects
        reply = self.dispatch(header, arrays)
        if not self._send(sock, reply):
            return False
        if header["kind"] == "shutdown":
            threading.Thread(target=self.shutdown, daemon=True).start()
            return False
        return True

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            sock.settimeout(self.io_timeout)
            sock.sendall(data)
        except OSError:
            return False
        return True

    def dispatch(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
        """The reply to one well-formed request."""
        kind, message_id = header["kind"], header["id"]
        try:
            if kind == "ping":
                return encode_message("ok", message_id)
            if kind == "info":
                return encode_message("ok", message_id, info=self._info)
            if kind == "shutdown":
                return encode_message("ok", message_id)
            if kind == "update":
                result = self.workspace.update(arrays)
                return encode_message(
                    "ok",
                    message_id,
                    result.to_arrays(),
                    levels=list(result.levels),
                    labels=list(result.labels) if result.labels else None,
                )
            raise SidecarProtocolError(f"unknown request kind {kind!r}; known: {REQUESTS}")
        except EdgeSDKError as exc:
            return encode_message("error", message_id, error=error_fields(exc))
        except Exception as exc:  # a server answers every request (logged), it never dies
            log.exception("workspace request %s failed", kind)
            return encode_message("error", message_id, error=error_fields(exc))

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or the parent dies); then remove the socket file."""
        if self.parent_pid is not None:
            threading.Thread(target=self._watch_parent, daemon=True).start()
        self._connections = Connections(
            self._serve_message,
            max_connections=self.max_connections,
            idle_timeout=self.idle_timeout,
            workers=self.workers,
        )
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._stopped.set()
            self._server.server_close()
            self._connections.stop()
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (call from another thread)."""
        self._server.shutdown()

    def _watch_parent(self) -> None:
        while not self._stopped.wait(0.5):
            if os.getppid() != self.parent_pid:
                log.warning("parent %s is gone; the sidecar stops", self.parent_pid)
                self.shutdown()
                return


def load_workspace(
    *,
    bundle: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    backend: str = "torch",
) -> Any:
    """The workspace from exactly one of a bundle directory or a ``Workspace.save`` file."""
    from edge_sdk.workspace import Workspace

    if (bundle is None) == (weights is None):
        raise InputError("give exactly one of a bundle directory or a workspace weights file")
    if bundle is not None:
        return Workspace.from_bundle(bundle, backend=backend)
    return Workspace.load(weights, backend=backend)


def serve(
    socket_path: str | os.PathLike[str],
    *,
    bundle: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    backend: str = "torch",
    idle_timeout: float = 300.0,
    io_timeout: float = 10.0,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    parent_pid: int | None = None,
    threads: int | None = 1,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    workers: int = DEFAULT_WORKERS,
) -> None:
    """Load the workspace and serve it until SIGTERM/SIGINT, a ``shutdown`` request or the
    parent's death (main thread only: it installs signal handlers).

    ``threads`` sets torch's intra-op threads (None: torch's default). One is the default
    because the workspace's tensors are tiny (no speed-up from more) and an idle OpenMP pool
    keeps spinning for a while after each request, which on a small device steals the cores
    the main process needs (measured: a 2-core box ran the main process's own torch update
    ~70x slower next to a default-threaded sidecar).
    """
    workspace = load_workspace(bundle=bundle, weights=weights, backend=backend)
    if backend == "torch" and threads is not None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    server = SidecarServer(
        workspace,
        socket_path,
        idle_timeout=idle_timeout,
        io_timeout=io_timeout,
        max_payload=max_payload,
        parent_pid=parent_pid,
        max_connections=max_connections,
        workers=workers,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: the sidecar stops", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("workspace sidecar (pid %s, %s) on %s", os.getpid(), backend, socket_path)
    server.serve_forever()
