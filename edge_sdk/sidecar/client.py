"""The sidecar client: the in-process Workspace's ``update``, run by a sidecar server.

Why a module of its own: a device's main process may have no torch; this client imports
neither torch nor the workspace's torch backend, and returns the same
:class:`~edge_sdk.workspace.WorkspaceResult`, bit for bit (arrays travel as raw bytes).
Each request has one deadline (connect + send + receive); past it,
:class:`~edge_sdk.errors.SidecarTimeoutError`. A full connection queue (``EAGAIN``) and a
"busy" answer are retried with doubling back-off within that deadline, a refused connection a
few times within ~0.1 s; a dead server then gives
:class:`~edge_sdk.errors.SidecarUnavailableError` (refused / reset / EOF).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import (
    InputError,
    SidecarAuthError,
    SidecarBusyError,
    SidecarProtocolError,
    SidecarTimeoutError,
    SidecarUnavailableError,
)
from edge_sdk.sidecar.protocol import (
    DEFAULT_MAX_PAYLOAD,
    PREFIX,
    ClosedError,
    encode_message,
    is_string_list,
    read_message,
    remaining,
    remote_error,
)
from edge_sdk.sidecar.trust import check_peer, check_socket_location, check_socket_path
from edge_sdk.workspace.names import LEVELS
from edge_sdk.workspace.result import WorkspaceResult

DEFAULT_TIMEOUT = 5.0
BACKOFF_FIRST, BACKOFF_MAX = 0.005, 0.1  # seconds: the client's retry back-off, doubling
REFUSED_RETRIES = 4  # connection refused: the listener may be between two lives (~0.08 s)


class SidecarClient:
    """Talks to a sidecar server; the same ``update`` as an in-process Workspace.

    Does not import torch. Not thread-safe: one client per thread (a client holds one
    connection; the server serves connections concurrently, up to its limit). The server must
    run as this user (checked on every connection) behind a :func:`check_socket_location`-safe
    path.

    Args:
        socket_path: the server's socket.
        timeout: seconds for one whole request (connect, send, answer).
        max_payload: the largest reply accepted, in bytes.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.path = Path(socket_path)
        check_socket_path(self.path)
        self.timeout = float(timeout)
        self.max_payload = int(max_payload)
        self._sock: socket.socket | None = None
        self._id = 0

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _connect(self, deadline: float) -> socket.socket:
        """A connection to a trusted server (same uid, safe directory).

        A full connection queue (``EAGAIN``: the server is alive but behind) is retried with
        doubling back-off until the deadline; a refused connection a few times quickly (the
        listener may be between two lives), then it means no server.
        """
        check_socket_location(self.path)
        delay, refused = BACKOFF_FIRST, 0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(remaining(deadline))
                sock.connect(str(self.path))
                break
            except TimeoutError as exc:
                sock.close()
                raise SidecarTimeoutError(
                    f"could not connect to the sidecar on {self.path} within {self.timeout:g} s"
                ) from exc
            except OSError as exc:
                sock.close()
                full = exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
                if exc.errno == errno.ECONNREFUSED and refused < REFUSED_RETRIES:
                    refused += 1
                elif not full:
                    raise SidecarUnavailableError(
                        f"no workspace sidecar on {self.path} ({exc.strerror or exc}): start one "
                        "with `edge-sdk sidecar --socket PATH --bundle DIR` or use ManagedSidecar"
                    ) from exc
                if deadline - time.monotonic() <= delay:
                    if full:
                        raise SidecarTimeoutError(
                            f"the sidecar's connection queue on {self.path} stayed full for "
                            f"{self.timeout:g} s (overloaded or hung)"
                        ) from exc
                    raise SidecarUnavailableError(
                        f"no workspace sidecar on {self.path} ({exc.strerror or exc})"
                    ) from exc
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX)
        try:
            check_peer(sock, "server")
        except SidecarAuthError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise SidecarUnavailableError(f"sidecar connection failed: {exc}") from exc
        return sock

    def request(
        self, kind: str, arrays: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Send one request and return the ``ok`` reply (header, arrays); raises otherwise.

        A "busy" answer (the server is at its connection limit) is retried with doubling
        back-off until the deadline, then raised as :class:`SidecarBusyError`.
        """
        self._id += 1
        message = encode_message(kind, self._id, arrays)
        payload_len = PREFIX.unpack_from(message)[4]
        if payload_len > self.max_payload:
            raise SidecarProtocolError(
                f"request payload of {payload_len} bytes exceeds the limit of "
                f"{self.max_payload} bytes"
            )
        deadline = time.monotonic() + self.timeout
        reused = self._sock is not None
        delay = BACKOFF_FIRST
        while True:
            if self._sock is None:
                self._sock = self._connect(deadline)
            try:
                return self._exchange(message, deadline)
            except ClosedError as exc:
                self.close()
                if reused:
                    reused = False
                    continue  # a kept connection went stale (server restarted): once more
                raise SidecarUnavailableError(
                    f"the sidecar on {self.path} closed the connection without answering: "
                    "it died or was stopped"
                ) from exc
            except SidecarBusyError:
                self.close()
                if deadline - time.monotonic() <= delay:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX)
                reused = False

    def _exchange(
        self, message: bytes, deadline: float
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self._sock is not None
        sock = self._sock
        sent = True
        try:
            try:
                sock.settimeout(remaining(deadline))
                sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError):
                sent = False  # closed at once: a "busy" or refusal frame may be waiting
            try:
                header, arrays = read_message(sock, deadline, max_payload=self.max_payload)
            except ConnectionResetError as exc:
                raise ClosedError from exc
        except TimeoutError as exc:
            self.close()
            raise SidecarTimeoutError(
                f"the sidecar on {self.path} did not answer within {self.timeout:g} s "
                "(hung or overloaded)"
            ) from exc
        except SidecarProtocolError:
            self.close()
            raise
        except ClosedError:
            raise
        except OSError as exc:
            self.close()
            raise SidecarUnavailableError(f"sidecar connection failed: {exc}") from exc
        if header["kind"] == "error":
            if header["id"] != self._id:
                self.close()  # a frame-level error: the server closes this connection
            raise remote_error(header.get("error"))
        if not sent:
            raise ClosedError
        if header["kind"] != "ok" or header["id"] != self._id:
            self.close()
            raise SidecarProtocolError(
                f"unexpected reply {header['kind']!r} #{header['id']} to request #{self._id}"
            )
        return header, arrays

    def ping(self) -> float:
        """Round-trip seconds of an empty request."""
        start = time.perf_counter()
        self.request("ping")
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        """The server's workspace settings, fingerprint, pid and protocol version."""
        header, _ = self.request("info")
        info = header.get("info")
        if not isinstance(info, dict):
            raise SidecarProtocolError("info reply lacks the info object")
        return info

    def shutdown(self) -> None:
        """Ask the server to stop (it answers first)."""
        self.request("shutdown")
        self.close()

    def update(self, outputs: Mapping[str, Any]) -> WorkspaceResult:
        """:meth:`edge_sdk.workspace.Workspace.update`, run by the sidecar."""
        if not isinstance(outputs, Mapping):
            raise InputError(f"workspace input must be a mapping of arrays, not {type(outputs)}")
        header, arrays = self.request("update", outputs)
        levels = header.get("levels") or list(LEVELS)
        labels = header.get("labels")
        if not is_string_list(levels) or not (labels is None or is_string_list(labels)):
            raise SidecarProtocolError("update reply has malformed level or label names")
        try:
            return WorkspaceResult.from_arrays(arrays, levels, labels)
        except InputError as exc:
            raise SidecarProtocolError(f"malformed workspace result: {exc}") from exc
