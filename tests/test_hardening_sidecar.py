"""Hardening of the workspace sidecar (issue #11, section 5): the peers authenticate each
other, load is bounded without a thread per connection and without needless restarts, and
absurd array shapes are a protocol error instead of a dead handler."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.errors import (
    SidecarAuthError,
    SidecarBusyError,
    SidecarError,
    SidecarProtocolError,
)
from edge_sdk.sidecar import (
    DEFAULT_WORKERS,
    MAGIC,
    PREFIX,
    PROTOCOL_VERSION,
    ManagedSidecar,
    SidecarClient,
    SidecarProcess,
    SidecarServer,
    check_peer_uid,
    check_socket_location,
    encode_message,
    peer_uid,
    read_message,
)
from edge_sdk.workspace import LEVELS, Workspace

K, D = 7, 16
LABELS = tuple(f"emotion{i}" for i in range(K))
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as another user (setuid) needs root"
)


def _outputs(seed: int, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    outputs = {n: rng.normal(size=(batch, D)).astype(np.float32) for n in ("z_c", "z_b", "z_h")}
    outputs["y_t"] = rng.dirichlet(np.ones(K), batch).astype(np.float32)
    outputs["z_t"] = rng.normal(size=(batch, D)).astype(np.float32)
    return outputs


def _assert_identical(a, b) -> None:
    expected, got = a.to_arrays(), b.to_arrays()
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name


@pytest.fixture()
def short_dir() -> Iterator[Path]:
    """A short private directory (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="wh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def weights() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="whw-", dir="/tmp"))
    rng = np.random.default_rng(0)
    theta = {m: rng.normal(0, 0.6, (K, D)).astype(np.float32) for m in LEVELS}
    workspace = Workspace(theta, multi_label=False, eta=1.0, labels=LABELS, backend="numpy")
    yield workspace.save(folder / "workspace.safetensors")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(weights: Path) -> Workspace:
    return Workspace.load(weights, backend="numpy")


@contextlib.contextmanager
def _serving(weights: Path, path: Path, **options) -> Iterator[SidecarServer]:
    """A real server in a thread of this process (so its threads can be counted)."""
    server = SidecarServer(Workspace.load(weights, backend="numpy"), path, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)


def _reply_of(data: bytes) -> dict:
    """Parse one raw reply frame with the protocol's own reader."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        header, _ = read_message(right, time.monotonic() + 5.0)
    return header


# --------------------------------------------------------------- finding 1: who is the peer
def test_peer_uid_check_refuses_another_user() -> None:
    check_peer_uid(1000, 1000, role="server")  # the same user passes
    with pytest.raises(SidecarAuthError, match="server runs as uid 1001.*uid 1000"):
        check_peer_uid(1001, 1000, role="server")
    with pytest.raises(SidecarAuthError, match="client runs as uid 0"):
        check_peer_uid(0, 1000, role="client")


def test_peer_uid_reads_so_peercred_of_a_real_socket(weights: Path, short_dir: Path) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_uid(left) == peer_uid(right) == os.geteuid()
    # The same check on a real client/server connection: same user, served.
    with _serving(weights, short_dir / "s.sock"), SidecarClient(short_dir / "s.sock") as client:
        assert client.info()["pid"] == os.getpid()


@needs_root
def test_client_refuses_a_server_of_another_user(short_dir: Path) -> None:
    """A listener whose process runs as another uid (as if planted by that user)."""
    path = short_dir / "planted.sock"
    script = f"""
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind({str(path)!r})
os.setuid({NOBODY})  # the kernel records the uid of whoever calls listen()
s.listen(8)
print("ready", flush=True)
conn, _ = s.accept()
time.sleep(10)
"""
    planted = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert planted.stdout.readline().strip() == "ready"
        client = SidecarClient(path, timeout=2.0)
        with pytest.raises(SidecarAuthError, match=f"server runs as uid {NOBODY}"):
            client.ping()
    finally:
        planted.kill()
        planted.wait()


@needs_root
def test_server_refuses_a_client_of_another_user(weights: Path, short_dir: Path) -> None:
    """The socket is loosened to 0666 so the other user gets past the file mode: the uid
    check behind it must still refuse the connection."""
    path = short_dir / "s.sock"
    script = f"""
import binascii, os, socket, sys
os.setuid({NOBODY})
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect({str(path)!r})
with __import__("contextlib").suppress(OSError):
    s.sendall(binascii.unhexlify(sys.argv[1]))
data = b""
try:
    while chunk := s.recv(65536):  # a refusal is answered, then the server closes
        data += chunk
except ConnectionResetError:
    pass  # closed with our request unread: the refusal was read before
except TimeoutError:
    pass  # still open after 5 s: served, not refused
print(binascii.hexlify(data).decode())
"""
    with _serving(weights, path):
        short_dir.chmod(0o711)
        path.chmod(0o666)
        done = subprocess.run(
            [sys.executable, "-c", script, encode_message("info", 1).hex()],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        header = _reply_of(bytes.fromhex(done.stdout.strip()))
        assert header["kind"] == "error" and header["error"]["type"] == "SidecarAuthError"
        assert f"client runs as uid {NOBODY}" in header["error"]["message"]
        with SidecarClient(path) as client:  # our own user is still served
            client.ping()


def test_socket_in_a_directory_others_can_write_is_refused_unless_sticky_and_ours(
    weights: Path, short_dir: Path, reference: Workspace
) -> None:
    shared = short_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, not sticky: anyone could swap the socket
    with pytest.raises(SidecarAuthError, match="writable by every user and not sticky"):
        SidecarServer(reference, shared / "s.sock")
    # A server started while the directory was private; then it is opened to everyone.
    private = short_dir / "private"
    private.mkdir(mode=0o700)
    with _serving(weights, private / "s.sock"):
        assert SidecarClient(private / "s.sock").ping() < 1.0
        private.chmod(0o777)
        with pytest.raises(SidecarAuthError, match="not sticky"):
            SidecarClient(private / "s.sock").ping()
        private.chmod(0o700)
    # Sticky (like /tmp): others cannot remove our file, so our own socket is accepted.
    shared.chmod(0o1777)
    with _serving(weights, shared / "s.sock"), SidecarClient(shared / "s.sock") as client:
        _assert_identical(reference.update(_outputs(1, 3)), client.update(_outputs(1, 3)))
    if os.geteuid() == 0:  # ... but a socket file of another user there is not
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(shared / "theirs.sock"))
        stale.close()
        os.chown(shared / "theirs.sock", NOBODY, -1)
        with pytest.raises(SidecarAuthError, match=f"belongs to uid {NOBODY}"):
            check_socket_location(shared / "theirs.sock")
        with pytest.raises(SidecarAuthError, match=f"uid {NOBODY}"):
            SidecarClient(shared / "theirs.sock").ping()
        with pytest.raises(SidecarAuthError, match=f"uid {NOBODY}"):
            SidecarServer(reference, shared / "theirs.sock")


# ------------------------------------------------------------------ finding 2: bounded load
def test_idle_connections_do_not_take_a_thread_each(weights: Path, short_dir: Path) -> None:
    path = short_dir / "s.sock"
    with _serving(weights, path) as server:
        with SidecarClient(path) as client:
            client.ping()  # the worker pool has started
        before = threading.active_count()
        connections = []
        try:
            for _ in range(300):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                connections.append(sock)
            time.sleep(1.0)  # time for the server to accept them all
            grown = threading.active_count() - before
            assert grown <= DEFAULT_WORKERS, f"{grown} more threads for 300 idle connections"
            # The ones past the limit were told so; the first ones are still served.
            over = _reply_of(_read_all(connections[-1]))
            assert over["error"]["type"] == "SidecarBusyError"
            assert f"{server.max_connections} connections" in over["error"]["message"]
            connections[0].sendall(encode_message("ping", 5))
            header, _ = read_message(connections[0], time.monotonic() + 5.0)
            assert header["kind"] == "ok" and header["id"] == 5
        finally:
            for sock in connections:
                sock.close()
        with SidecarClient(path) as client:  # and new clients once they are gone
            client.ping()


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5.0)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_busy_server_is_retried_with_backoff_then_reported(
    weights: Path, short_dir: Path, reference: Workspace
) -> None:
    """At its connection limit the server answers "busy"; the client backs off and retries
    within its deadline (served once a slot frees), and past the deadline says so."""
    path = short_dir / "s.sock"
    with _serving(weights, path, max_connections=1):
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.connect(str(path))  # takes the only slot
        time.sleep(0.2)
        start = time.monotonic()
        with pytest.raises(SidecarBusyError, match="1 connections open"):
            SidecarClient(path, timeout=0.5).ping()
        assert 0.4 < time.monotonic() - start < 1.5
        threading.Timer(0.3, holder.close).start()
        start = time.monotonic()
        with SidecarClient(path, timeout=5.0) as client:
            _assert_identical(reference.update(_outputs(6, 2)), client.update(_outputs(6, 2)))
        assert 0.25 < time.monotonic() - start < 2.0


def test_concurrent_clients_all_succeed(
    weights: Path, short_dir: Path, reference: Workspace
) -> None:
    """16 threads x 20 requests, each on a fresh connection: nothing is refused (EAGAIN) and
    every result is bit-identical to the in-process workspace."""
    outputs = _outputs(2, 2)
    expected = reference.update(outputs)
    failures: list[str] = []
    with SidecarProcess(weights=weights, socket_path=short_dir / "s.sock", backend="numpy") as p:

        def run() -> None:
            for _ in range(20):
                try:
                    with SidecarClient(p.socket_path, timeout=10.0) as client:
                        _assert_identical(expected, client.update(outputs))
                except (SidecarError, AssertionError) as exc:  # every failure counts
                    failures.append(repr(exc))

        threads = [threading.Thread(target=run) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not failures, f"{len(failures)} of 320 requests failed, e.g. {failures[0]}"


def _resume(pid: int) -> None:
    """SIGCONT, unless the process is gone already (a supervisor replaced it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


@pytest.fixture()
def managed(weights: Path, short_dir: Path) -> Iterator[ManagedSidecar]:
    process = SidecarProcess(weights=weights, socket_path=short_dir / "m.sock", backend="numpy")
    with ManagedSidecar(process, timeout=5.0) as sidecar:
        yield sidecar


def test_transient_eagain_does_not_restart_the_server(
    managed: ManagedSidecar, reference: Workspace
) -> None:
    """The server's connection queue is really full (the server paused, the queue filled
    until the kernel answered EAGAIN); it resumes 0.3 s later. The managed client waits it
    out with back-off: same server, no restart, the right answer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = int(Path("/proc/sys/net/core/somaxconn").read_text()) + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"filling the connection queue needs {needed} open files (limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    outputs = _outputs(3, 2)
    managed.update(outputs)
    pid = managed.process.pid
    managed.client.close()  # the next update must connect
    fillers: list[socket.socket] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        while len(fillers) < needed:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(managed.process.socket_path))
            except BlockingIOError:  # EAGAIN: the queue is full
                sock.close()
                break
            fillers.append(sock)
        else:
            raise AssertionError("the connection queue never filled")
        for sock in fillers:
            sock.close()  # they stay queued (the server sees them as closed when it resumes)
        threading.Timer(0.3, _resume, (pid,)).start()
        start = time.monotonic()
        result = managed.update(outputs)
        waited = time.monotonic() - start
    finally:
        _resume(pid)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert managed.restarts == 0 and managed.process.pid == pid
    assert waited >= 0.25  # it really went through the EAGAIN period
    _assert_identical(reference.update(outputs), result)


def test_transient_stall_does_not_restart_a_server_that_answers_the_health_ping(
    managed: ManagedSidecar, reference: Workspace
) -> None:
    """The server stalls for 1.3 s, longer than the request's 1 s timeout but not than the
    health ping after it: it is kept, and the retried request is answered by it."""
    outputs = _outputs(4, 2)
    managed.update(outputs)
    pid = managed.process.pid
    managed.client.timeout = 1.0
    os.kill(pid, signal.SIGSTOP)
    try:
        threading.Timer(1.3, _resume, (pid,)).start()
        result = managed.update(outputs)
    finally:
        _resume(pid)
    assert managed.restarts == 0 and managed.process.pid == pid
    assert managed.transient_errors == 1
    _assert_identical(reference.update(outputs), result)


# ------------------------------------------------------------- finding 3: shapes before bytes
def _frame(shape: list[int], payload: bytes = b"") -> bytes:
    spec = {"kind": "update", "id": 3, "arrays": [{"name": "z", "dtype": "<f8", "shape": shape}]}
    raw = json.dumps(spec).encode()
    return PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, len(raw), len(payload)) + raw + payload


HUGE_SHAPES = [[0, 2**62, 2**62], [2**62, 0], [0, 2**64], [0, 2**40, 2**40, 2**40]]


@pytest.mark.parametrize("shape", HUGE_SHAPES, ids=str)
def test_huge_shape_with_an_empty_payload_is_a_protocol_error(
    weights: Path, short_dir: Path, reference: Workspace, shape: list[int]
) -> None:
    path = short_dir / "s.sock"
    with _serving(weights, path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(_frame(shape))
            header, _ = read_message(sock, time.monotonic() + 5.0)
        assert header["kind"] == "error" and header["error"]["type"] == "SidecarProtocolError"
        assert "too large" in header["error"]["message"]
        with SidecarClient(path) as client:  # the server keeps serving
            _assert_identical(reference.update(_outputs(5, 2)), client.update(_outputs(5, 2)))
    # The client reads replies with the same reader: the same refusal, no numpy error.
    left, right = socket.socketpair()
    with left, right:
        left.sendall(_frame(shape))
        with pytest.raises(SidecarProtocolError, match="too large"):
            read_message(right, time.monotonic() + 5.0)
