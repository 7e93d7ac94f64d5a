"""A supervised sidecar: the server as a child process, restarted when dead or hung.

Why a module of its own: supervision is policy on top of the client. :class:`SidecarProcess`
starts ``python -m edge_sdk.sidecar`` as a child (private socket directory, log beside it) and
waits until it answers; :class:`ManagedSidecar` has the Workspace interface, restarts the child
only when it died or fails a health ping (hung), and retries the (stateless, idempotent)
request once.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_sdk.errors import (
    InputError,
    SidecarAuthError,
    SidecarBusyError,
    SidecarError,
    SidecarProtocolError,
    SidecarTimeoutError,
    SidecarUnavailableError,
)
from edge_sdk.sidecar.client import BACKOFF_FIRST, BACKOFF_MAX, DEFAULT_TIMEOUT, SidecarClient
from edge_sdk.sidecar.trust import check_socket_path
from edge_sdk.workspace.result import WorkspaceResult

log = logging.getLogger(__name__)

HEALTH_PINGS = 3


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
        check_socket_path(self.socket_path)
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
