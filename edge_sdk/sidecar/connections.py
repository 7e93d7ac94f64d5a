"""The server's open connections: one selector thread for idle ones, a pool for requests.

Why a module of its own: how connections wait, are admitted, refused ("busy") and expire is
independent of what a request does; the server hands in one callable that reads and answers a
message. No thread per connection: at most ``max_connections`` are open, a further one gets a
``SidecarBusyError`` frame, and a connection idle for ``idle_timeout`` is closed.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from edge_sdk.errors import SidecarBusyError
from edge_sdk.sidecar.protocol import encode_message, error_fields

log = logging.getLogger(__name__)


def send_nowait(sock: socket.socket, data: bytes) -> None:
    """Best effort, never blocking: a refusal to a connection about to be closed."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(data)


class Connections:
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

    def __init__(
        self,
        serve_message: Callable[[socket.socket], bool],
        *,
        max_connections: int,
        idle_timeout: float,
        workers: int,
    ) -> None:
        self._serve_message = serve_message  # read and answer one message; False: close
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()  # only to wake the loop for stop()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._idle: dict[socket.socket, float] = {}  # registered connection -> idle deadline
        self._lock = threading.Lock()
        self._open = 0
        self._stopping = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sidecar-worker")
        self._tick = min(1.0, idle_timeout)
        self._thread = threading.Thread(target=self._loop, name="sidecar-connections", daemon=True)
        self._thread.start()

    def admit(self, sock: socket.socket) -> None:
        """Take a new connection, or answer "busy" and close it when at the limit."""
        with self._lock:
            refused = self._stopping or self._open >= self.max_connections
            if not refused:
                self._open += 1
        if refused:
            busy = SidecarBusyError(
                f"the sidecar has {self.max_connections} connections open (its limit); retry later"
            )
            send_nowait(sock, encode_message("error", 0, error=error_fields(busy)))
            sock.close()
            return
        self._wait_for_message(sock)

    def _wait_for_message(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._stopping:
                self._idle[sock] = time.monotonic() + self.idle_timeout
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
            keep = self._serve_message(sock)
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
