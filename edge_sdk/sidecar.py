"""The workspace as a separate local process: a Unix-socket server, its client, a supervisor.

Why: the CocoER workspace's reference runs in PyTorch (spec section 1, step 7), but a device's
main process may not have torch. :class:`SidecarClient` imports neither torch nor
:mod:`edge_sdk.workspace`'s torch backend; the server (``edge-sdk sidecar`` or
``python -m edge_sdk.sidecar``) holds a :class:`~edge_sdk.workspace.Workspace`. The client's
``update(outputs)`` has the in-process signature and returns the same
:class:`~edge_sdk.workspace.WorkspaceResult`, bit for bit (arrays travel as raw bytes).

Wire format (protocol version 1), one message per request and per reply::

    prefix   20 bytes, little-endian: magic b"EDWS", u16 version, u16 flags (0),
             u32 header length, u64 payload length
    header   UTF-8 JSON object: {"kind": str, "id": int, "arrays": [{"name", "dtype", "shape"}],
             ...kind-specific fields}
    payload  the arrays' bytes back to back, C order, in the header's order

dtypes are ``<f4``, ``<f8`` and ``<i8`` only; nothing is ever unpickled or evaluated. Header
(64 KiB), payload (64 MiB by default), array count and rank are capped; the lengths must add up
exactly. Requests: ``ping``, ``info``, ``update`` (the graphs' output arrays), ``shutdown``;
replies: ``ok`` or ``error`` ({"type": an ``edge_sdk.errors`` class name, "message"}). A bad
frame (magic, version, sizes, JSON) is answered with an error and the connection is closed;
an error inside ``update`` (e.g. a wrong shape) is answered and the connection stays usable.

Array shapes are checked before anything is allocated: non-negative ints whose byte counts
add up to the payload, each array's extent (zero dimensions counted as one) within the payload
limit.

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
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk import errors
from edge_sdk.errors import (
    EdgeSDKError,
    InputError,
    SidecarAuthError,
    SidecarBusyError,
    SidecarError,
    SidecarProtocolError,
    SidecarTimeoutError,
    SidecarUnavailableError,
)
from edge_sdk.workspace import LEVELS, WorkspaceResult

log = logging.getLogger(__name__)

MAGIC = b"EDWS"
PROTOCOL_VERSION = 1
PREFIX = struct.Struct("<4sHHIQ")  # magic, version, flags, header bytes, payload bytes
MAX_HEADER = 64 * 1024
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
MAX_ARRAYS = 32
MAX_NDIM = 8
DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8"), "<i8": np.dtype("<i8")}
REQUESTS = ("ping", "info", "update", "shutdown")
DEFAULT_TIMEOUT = 5.0
LISTEN_BACKLOG = max(128, socket.SOMAXCONN)  # the kernel caps it at net.core.somaxconn
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_WORKERS = 4
BACKOFF_FIRST, BACKOFF_MAX = 0.005, 0.1  # seconds: the client's retry back-off, doubling
REFUSED_RETRIES = 4  # connection refused: the listener may be between two lives (~0.08 s)
HEALTH_PINGS = 3
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, NUL included


class _ClosedError(Exception):
    """The peer closed the connection between messages (a normal end, not an error)."""


# ------------------------------------------------------------------------------- wire format
def _wire_array(name: str, value: Any) -> np.ndarray:
    """A C-contiguous little-endian array of an allowed dtype (floats keep their width)."""
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize in (4, 8):
        dtype = np.dtype(f"<f{array.dtype.itemsize}")
    elif array.dtype.kind in "iub":
        dtype = np.dtype("<i8")
    elif array.dtype.kind == "f":
        dtype = np.dtype("<f8")
    else:
        raise InputError(f"array {name!r} has dtype {array.dtype}; send numbers")
    return np.ascontiguousarray(array, dtype=dtype)


def encode_message(
    kind: str,
    message_id: int,
    arrays: Mapping[str, Any] | None = None,
    *,
    version: int = PROTOCOL_VERSION,
    **fields: Any,
) -> bytes:
    """One framed message (``version`` is a parameter only so tests can forge old ones)."""
    wire = {name: _wire_array(name, value) for name, value in (arrays or {}).items()}
    header = {
        "kind": kind,
        "id": int(message_id),
        "arrays": [
            {"name": name, "dtype": a.dtype.str, "shape": list(a.shape)} for name, a in wire.items()
        ],
        **fields,
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    payload = [a.tobytes() for a in wire.values()]
    prefix = PREFIX.pack(MAGIC, version, 0, len(header_bytes), sum(len(p) for p in payload))
    return b"".join([prefix, header_bytes, *payload])


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _recv_into(sock: socket.socket, view: memoryview, deadline: float) -> int:
    """Fill ``view``; returns bytes read before EOF (== len(view) unless the peer closed)."""
    done = 0
    while done < len(view):
        sock.settimeout(_remaining(deadline))
        count = sock.recv_into(view[done:])
        if count == 0:
            return done
        done += count
    return done


def _recv_exact(sock: socket.socket, size: int, deadline: float, what: str) -> bytearray:
    buffer = bytearray(size)
    if _recv_into(sock, memoryview(buffer), deadline) != size:
        raise ConnectionResetError(f"connection closed in the middle of the {what}")
    return buffer


def _parse_arrays(
    specs: Any, payload_len: int, max_payload: int
) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The header's array specs, checked before anything is allocated.

    Every dimension is a non-negative int; the byte counts must add up to the payload; and each
    array's extent with zero dimensions counted as one must fit in ``max_payload`` bytes, so a
    "zero-sized" shape such as ``[0, 2**62, 2**62]`` (0 bytes, yet too big for numpy to even
    describe) is refused as a protocol error instead of failing inside ``reshape``.
    """
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise SidecarProtocolError(f"header 'arrays' must be a list of at most {MAX_ARRAYS}")
    parsed, total, names = [], 0, set()
    for spec in specs:
        if not isinstance(spec, dict):
            raise SidecarProtocolError("every array spec must be an object")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        if not isinstance(name, str) or not name or len(name) > 64 or name in names:
            raise SidecarProtocolError(f"bad or repeated array name {name!r}")
        if dtype not in DTYPES:
            raise SidecarProtocolError(f"array {name!r}: dtype {dtype!r} not in {sorted(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise SidecarProtocolError(f"array {name!r}: bad shape {shape!r}")
        names.add(name)
        itemsize = DTYPES[dtype].itemsize
        extent, count = 1, 1
        for n in shape:
            extent *= max(n, 1)
            count *= n
            if extent * itemsize > max_payload:
                raise SidecarProtocolError(
                    f"array {name!r}: shape {shape!r} is too large (more than {max_payload} "
                    "bytes even where a dimension is 0)"
                )
        total += count * itemsize
        if total > payload_len:
            break
        parsed.append((name, DTYPES[dtype], tuple(shape)))
    if total != payload_len:
        raise SidecarProtocolError(
            f"arrays need {total} bytes but the payload has {payload_len}: inconsistent message"
        )
    return parsed


def read_message(
    sock: socket.socket,
    deadline: float,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    first_byte_deadline: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate one message.

    Raises:
        _ClosedError: EOF before the first byte (the peer hung up between messages).
        SidecarProtocolError: bad magic, version, sizes, JSON or array specs.
        TimeoutError / OSError: the deadline passed or the connection broke.
    """
    prefix = bytearray(PREFIX.size)
    first = _recv_into(sock, memoryview(prefix)[:1], first_byte_deadline or deadline)
    if first == 0:
        raise _ClosedError
    if _recv_into(sock, memoryview(prefix)[1:], deadline) != PREFIX.size - 1:
        raise ConnectionResetError("connection closed in the middle of a message prefix")
    magic, version, _flags, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise SidecarProtocolError(f"not an edge-sdk sidecar message (magic {bytes(magic)!r})")
    if version != PROTOCOL_VERSION:
        raise SidecarProtocolError(
            f"protocol version {version} is not supported (this side speaks "
            f"{PROTOCOL_VERSION}): run the same edge-sdk version on both sides"
        )
    if not 0 < header_len <= MAX_HEADER:
        raise SidecarProtocolError(f"header of {header_len} bytes (limit {MAX_HEADER})")
    if payload_len > max_payload:
        raise SidecarProtocolError(
            f"payload of {payload_len} bytes exceeds the limit of {max_payload} bytes"
        )
    raw = _recv_exact(sock, header_len, deadline, "header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SidecarProtocolError(f"header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SidecarProtocolError("header must be a JSON object")
    kind, message_id = header.get("kind"), header.get("id")
    if not isinstance(kind, str) or not isinstance(message_id, int):
        raise SidecarProtocolError("header needs a string 'kind' and an integer 'id'")
    specs = _parse_arrays(header.get("arrays", []), payload_len, max_payload)
    payload = _recv_exact(sock, payload_len, deadline, "payload")
    arrays, offset = {}, 0
    for name, dtype, shape in specs:
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape)
        offset += count * dtype.itemsize
    return header, arrays


# ------------------------------------------------------------------------- trust of the peer
_UCRED = struct.Struct("iII")  # Linux struct ucred: pid_t pid, uid_t uid, gid_t gid


def peer_uid(sock: socket.socket) -> int | None:
    """The connected peer's effective uid, from the kernel (``SO_PEERCRED``).

    Why: the uid is what the kernel recorded when the peer called ``connect`` or ``listen``,
    so it cannot be forged by what the peer sends. None where the OS has no ``SO_PEERCRED``
    (not Linux); there only the socket file's mode and the directory rule protect the peers.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return uid


def check_peer_uid(peer: int, own: int, *, role: str = "peer") -> None:
    """Refuse a peer (``role``: "server" or "client") that runs as another user.

    Raises:
        SidecarAuthError: ``peer != own``.
    """
    if peer != own:
        raise SidecarAuthError(
            f"the sidecar {role} runs as uid {peer}, not as this user (uid {own}): refused, "
            "only the same user's processes may talk to the workspace sidecar"
        )


def _check_peer(sock: socket.socket, role: str) -> None:
    uid = peer_uid(sock)
    if uid is not None:
        check_peer_uid(uid, os.geteuid(), role=role)


def check_socket_location(path: str | os.PathLike[str]) -> None:
    """Refuse a socket path another user could have planted or could replace.

    Why: whoever can write the socket's directory can swap the socket for their own and read
    every request. The directory must belong to this user or root; if anyone else may write it
    (world-writable, or group-writable by a group other than ours) it must be sticky, like
    ``/tmp``, so others cannot remove our file, and an existing socket file there must be ours.
    A missing directory or socket passes here (``connect``/``bind`` report those).

    Raises:
        SidecarAuthError: the directory or the socket file fails these rules.
    """
    path = Path(path)
    directory = path.parent
    uid = os.geteuid()
    try:
        info = directory.stat()
    except OSError:
        return
    if info.st_uid not in (uid, 0):
        raise SidecarAuthError(
            f"socket directory {directory} belongs to uid {info.st_uid}, who could replace "
            "the socket: use a directory of your own (mode 0700)"
        )
    if info.st_mode & stat.S_IWOTH:
        writers = "every user"
    elif info.st_mode & stat.S_IWGRP and info.st_gid != os.getegid():
        writers = f"group {info.st_gid}"
    else:
        return
    if not info.st_mode & stat.S_ISVTX:
        raise SidecarAuthError(
            f"socket directory {directory} is writable by {writers} and not sticky, so another "
            "user could replace the socket: use a private directory (mode 0700)"
        )
    try:
        owner = path.lstat().st_uid
    except OSError:
        return
    if owner != uid:
        raise SidecarAuthError(
            f"socket {path} in the shared directory {directory} belongs to uid {owner}, not to "
            f"this user (uid {uid}): refused"
        )


# ------------------------------------------------------------------------------------ server
def _send_nowait(sock: socket.socket, data: bytes) -> None:
    """Best effort, never blocking: a refusal to a connection about to be closed."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(data)


class _UnixServer(socketserver.UnixStreamServer):
    """Accepts on the listening socket; every accepted connection goes to the owner's pool."""

    request_queue_size = LISTEN_BACKLOG
    owner: SidecarServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._admit(request)


class _Connections:
    """Every open connection of a server, with no thread per connection.

    Why: a thread per connection let 300 idle clients hold 300 threads. Here idle connections
    wait in one selector thread; a connection with a message arriving goes to a pool of
    ``workers`` threads that reads the message (within ``io_timeout``), answers and registers
    it again; ready connections beyond the workers wait in the pool's queue. Past
    ``max_connections`` open connections a new one is answered with a ``SidecarBusyError``
    frame and closed (the client backs off and retries). Workers register connections
    themselves (under the lock; epoll and kqueue take registrations while another thread
    waits), which saves a wake-up of the selector thread per request.
    """

    def __init__(self, owner: SidecarServer) -> None:
        self.owner = owner
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()  # only to wake the loop for stop()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._idle: dict[socket.socket, float] = {}  # registered connection -> idle deadline
        self._lock = threading.Lock()
        self._open = 0
        self._stopping = False
        self._pool = ThreadPoolExecutor(owner.workers, thread_name_prefix="sidecar-worker")
        self._tick = min(1.0, owner.idle_timeout)
        self._thread = threading.Thread(target=self._loop, name="sidecar-connections", daemon=True)
        self._thread.start()

    def admit(self, sock: socket.socket) -> None:
        """Take a new connection, or answer "busy" and close it when at the limit."""
        with self._lock:
            refused = self._stopping or self._open >= self.owner.max_connections
            if not refused:
                self._open += 1
        if refused:
            busy = SidecarBusyError(
                f"the sidecar has {self.owner.max_connections} connections open (its limit); "
                "retry later"
            )
            _send_nowait(sock, encode_message("error", 0, error=_error_fields(busy)))
            sock.close()
            return
        self._wait_for_message(sock)

    def _wait_for_message(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._stopping:
                self._idle[sock] = time.monotonic() + self.owner.idle_timeout
                self._selector.register(sock, selectors.EVENT_READ, sock)
                return
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        sock.close()
        with self._lock:
            self._open -= 1

    def _serve(self, sock: socket.socket) -> None:
        keep = False
        try:
            keep = self.owner._serve_message(sock)
        except Exception:  # one connection's failure never ends the server
            log.exception("a sidecar connection failed")
        finally:
            if keep:
                self._wait_for_message(sock)
            else:
                self._drop(sock)

    def _take(self, sock: socket.socket) -> None:
        """Unregister a waiting connection (the caller holds the lock)."""
        del self._idle[sock]
        self._selector.unregister(sock)

    def _loop(self) -> None:
        while not self._stopping:
            with self._lock:
                now = time.monotonic()
                wait = min(min(self._idle.values(), default=now + self._tick) - now, self._tick)
            events = self._selector.select(max(wait, 0.0))
            ready, expired = [], []
            with self._lock:
                for key, _events in events:
                    if key.data is not None and key.data in self._idle:
                        self._take(key.data)
                        ready.append(key.data)
                now = time.monotonic()
                for sock in [s for s, deadline in self._idle.items() if deadline <= now]:
                    self._take(sock)
                    expired.append(sock)
            for sock in ready:
                self._pool.submit(self._serve, sock)
            for sock in expired:
                self._drop(sock)  # idle too long: the client reconnects

    def stop(self) -> None:
        """Close every waiting connection; requests being served finish, then close."""
        with self._lock:
            self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._thread.join(5)
        with self._lock:
            waiting = list(self._idle)
            for sock in waiting:
                self._take(sock)
        for sock in waiting:
            self._drop(sock)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _error_fields(exc: BaseException) -> dict[str, str]:
    name = type(exc).__name__
    if not isinstance(exc, EdgeSDKError):
        name = "SidecarError"
    return {"type": name, "message": str(exc)}


def _check_socket_path(path: Path) -> None:
    if len(os.fsencode(str(path))) > _SOCKET_PATH_MAX:
        raise SidecarError(
            f"socket path {path} is longer than {_SOCKET_PATH_MAX} bytes (a Unix socket limit)"
        )


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
        _check_socket_path(self.path)
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
        self._connections: _Connections | None = None

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
            _check_peer(sock, "client")
        except (SidecarAuthError, OSError) as exc:
            log.warning("refusing a connection: %s", exc)
            if isinstance(exc, SidecarAuthError):
                _send_nowait(sock, encode_message("error", 0, error=_error_fields(exc)))
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
        except _ClosedError:
            return False
        except SidecarProtocolError as exc:
            log.warning("closing a connection after a bad message: %s", exc)
            self._send(sock, encode_message("error", 0, error=_error_fields(exc)))
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
            return encode_message("error", message_id, error=_error_fields(exc))
        except Exception as exc:  # a server answers every request (logged), it never dies
            log.exception("workspace request %s failed", kind)
            return encode_message("error", message_id, error=_error_fields(exc))

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or the parent dies); then remove the socket file."""
        if self.parent_pid is not None:
            threading.Thread(target=self._watch_parent, daemon=True).start()
        self._connections = _Connections(self)
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


# ------------------------------------------------------------------------------------ client
def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _remote_error(fields: Any) -> EdgeSDKError:
    if not isinstance(fields, dict):
        return SidecarProtocolError(f"malformed error reply: {fields!r}")
    name, message = str(fields.get("type")), str(fields.get("message"))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, EdgeSDKError):
        return cls(message)
    return SidecarError(f"sidecar failed: {name}: {message}")


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
        _check_socket_path(self.path)
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
                sock.settimeout(_remaining(deadline))
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
            _check_peer(sock, "server")
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
            except _ClosedError as exc:
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
                sock.settimeout(_remaining(deadline))
                sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError):
                sent = False  # closed at once: a "busy" or refusal frame may be waiting
            try:
                header, arrays = read_message(sock, deadline, max_payload=self.max_payload)
            except ConnectionResetError as exc:
                raise _ClosedError from exc
        except TimeoutError as exc:
            self.close()
            raise SidecarTimeoutError(
                f"the sidecar on {self.path} did not answer within {self.timeout:g} s "
                "(hung or overloaded)"
            ) from exc
        except SidecarProtocolError:
            self.close()
            raise
        except _ClosedError:
            raise
        except OSError as exc:
            self.close()
            raise SidecarUnavailableError(f"sidecar connection failed: {exc}") from exc
        if header["kind"] == "error":
            if header["id"] != self._id:
                self.close()  # a frame-level error: the server closes this connection
            raise _remote_error(header.get("error"))
        if not sent:
            raise _ClosedError
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
        if not _strings(levels) or not (labels is None or _strings(labels)):
            raise SidecarProtocolError("update reply has malformed level or label names")
        try:
            return WorkspaceResult.from_arrays(arrays, levels, labels)
        except InputError as exc:
            raise SidecarProtocolError(f"malformed workspace result: {exc}") from exc


# -------------------------------------------------------------------------------- supervisor
class SidecarProcess:
    """Starts, watches and stops a sidecar server as a child process.

    Args:
        bundle / weights: what the server loads (exactly one).
        socket_path: where it listens; default: a fresh private (0700) temporary directory.
        backend: the server's workspace backend (``torch`` by default: the reference).
        start_timeout: seconds to wait for the server to answer after a (re)start.
        python: the interpreter (default: this one).
        threads: the server's torch threads (see :func:`serve`).
    """

    def __init__(
        self,
        *,
        bundle: str | os.PathLike[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        backend: str = "torch",
        start_timeout: float = 60.0,
        python: str | None = None,
        threads: int = 1,
    ) -> None:
        if (bundle is None) == (weights is None):
            raise InputError("give exactly one of a bundle directory or a workspace weights file")
        self._source = (
            ("--bundle", str(bundle)) if bundle is not None else ("--weights", str(weights))
        )
        self._own_dir: Path | None = None
        if socket_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="edge-sdk-sidecar-"))
            socket_path = self._own_dir / "workspace.sock"
        self.socket_path = Path(socket_path)
        _check_socket_path(self.socket_path)
        self.backend = backend
        self.start_timeout = float(start_timeout)
        self.python = python or sys.executable
        self.threads = int(threads)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = (self._own_dir or self.socket_path.parent) / (
            self.socket_path.name + ".log"
        )

    @property
    def pid(self) -> int | None:
        """The running server's pid, or None."""
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        """Whether the child process exists (it may still be hung: see ManagedSidecar)."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The server's command line."""
        return [
            self.python,
            "-m",
            "edge_sdk.sidecar",
            "--socket",
            str(self.socket_path),
            *self._source,
            "--backend",
            self.backend,
            "--parent-pid",
            str(os.getpid()),
            "--threads",
            str(self.threads),
        ]

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def start(self) -> None:
        """Start the server and wait until it answers (or raise SidecarUnavailableError)."""
        if self.alive:
            return
        # O_NOFOLLOW: the log may sit beside the socket in a shared (sticky) directory, where
        # another user could have planted a symlink under its name.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            log_fd = os.open(self._log_path, flags, 0o600)
        except OSError as exc:
            raise SidecarError(f"cannot open the sidecar log {self._log_path}: {exc}") from exc
        with open(log_fd, "ab") as log_file:
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        deadline = time.monotonic() + self.start_timeout
        with SidecarClient(self.socket_path, timeout=1.0) as probe:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise SidecarUnavailableError(
                        f"the sidecar exited with code {code} while starting:\n{self._log_tail()}"
                    )
                try:
                    if probe.info().get("pid") == self._process.pid:
                        return
                except SidecarAuthError:
                    self.stop(graceful=False)
                    raise
                except SidecarError:
                    pass
                if time.monotonic() > deadline:
                    self.stop(graceful=False)
                    raise SidecarTimeoutError(
                        f"the sidecar did not answer within {self.start_timeout:g} s of "
                        f"starting:\n{self._log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self, *, graceful: bool = True, timeout: float = 3.0) -> None:
        """SIGTERM (then SIGKILL after ``timeout``), or SIGKILL at once when not graceful."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
            else:
                process.kill()
        process.wait()

    def restart(self) -> None:
        """Kill whatever runs (it failed) and start afresh."""
        self.stop(graceful=False)
        self.start()

    def close(self) -> None:
        """Stop the server and remove the temporary directory this object created."""
        self.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> SidecarProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ManagedSidecar:
    """A supervised sidecar with the Workspace interface: ``update(outputs)``.

    When a request fails with :class:`SidecarUnavailableError` (including timeouts), the
    server is restarted only if it is really gone: its process has exited, or a health ping
    still fails after :data:`HEALTH_PINGS` tries with back-off (hung). A server that answers
    the ping (or answers "busy") had a transient failure and is kept. Either way the request
    is retried once (the workspace is stateless, so a retry is safe); a second failure is
    raised. ``restarts`` counts the restarts and ``transient_errors`` the kept servers' errors;
    each is logged as a warning.
    """

    def __init__(self, process: SidecarProcess, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.process = process
        self.client = SidecarClient(process.socket_path, timeout=timeout)
        self.restarts = 0
        self.transient_errors = 0

    def start(self) -> ManagedSidecar:
        """Start the server (idempotent)."""
        self.process.start()
        return self

    def update(self, outputs: Mapping[str, Any]) -> WorkspaceResult:
        """The workspace update, retried once; the server is restarted only if dead or hung."""
        if self.process.pid is None:
            self.process.start()
        elif not self.process.alive:
            self._restart("the sidecar process exited")
        try:
            return self.client.update(outputs)
        except SidecarUnavailableError as exc:
            self.client.close()
            if self.process.alive and self._healthy():
                log.warning("transient sidecar error (the server answers; kept): %s", exc)
                self.transient_errors += 1
            else:
                self._restart(str(exc))
            return self.client.update(outputs)

    def _healthy(self) -> bool:
        """Whether the running server answers a ping within a few tries (refusals retried)."""
        delay = BACKOFF_FIRST
        for _ in range(HEALTH_PINGS):
            if not self.process.alive:
                return False
            try:
                with SidecarClient(self.process.socket_path, timeout=self.client.timeout) as probe:
                    probe.ping()
                return True
            except SidecarBusyError:
                return True  # it answered: alive, only at its connection limit
            except SidecarTimeoutError:
                return False  # a whole timeout without an answer: hung
            except (SidecarUnavailableError, SidecarProtocolError):
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX)
        return False

    def info(self) -> dict[str, Any]:
        """The server's info (see :meth:`SidecarClient.info`)."""
        return self.client.info()

    def _restart(self, reason: str) -> None:
        log.warning("restarting the workspace sidecar: %s", reason)
        self.client.close()
        self.process.restart()
        self.restarts += 1

    def close(self) -> None:
        """Stop the server and drop the connection."""
        self.client.close()
        self.process.close()

    def __enter__(self) -> ManagedSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------- main
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


if __name__ == "__main__":
    sys.exit(main())
