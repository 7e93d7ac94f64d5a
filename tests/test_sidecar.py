"""The workspace sidecar: same results as in-process, typed errors for dead / hung / confused
servers, restarts, malformed messages answered instead of crashing, no torch in the client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.errors import (
    InputError,
    SidecarError,
    SidecarProtocolError,
    SidecarTimeoutError,
    SidecarUnavailableError,
)
from edge_sdk.sidecar import (
    MAGIC,
    PREFIX,
    PROTOCOL_VERSION,
    ManagedSidecar,
    SidecarClient,
    SidecarProcess,
    SidecarServer,
    encode_message,
    read_message,
)
from edge_sdk.workspace import LEVELS, Workspace

REPO = Path(__file__).resolve().parents[1]
K, D = 7, 16
LABELS = tuple(f"emotion{i}" for i in range(K))


def _outputs(seed: int, batch: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    outputs = {n: rng.normal(size=(batch, D)).astype(dtype) for n in ("z_c", "z_b", "z_h")}
    outputs["y_t"] = rng.dirichlet(np.ones(K), batch).astype(dtype)
    outputs["z_t"] = rng.normal(size=(batch, D)).astype(dtype)
    return outputs


@pytest.fixture(scope="module")
def short_dir() -> Iterator[Path]:
    """A short private directory (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ws-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def weights(short_dir: Path) -> Path:
    rng = np.random.default_rng(0)
    theta = {m: rng.normal(0, 0.6, (K, D)).astype(np.float32) for m in LEVELS}
    workspace = Workspace(theta, multi_label=False, eta=1.0, labels=LABELS, backend="numpy")
    return workspace.save(short_dir / "workspace.safetensors")


@pytest.fixture(scope="module")
def in_process(weights: Path) -> Workspace:
    return Workspace.load(weights, backend="torch")


@pytest.fixture(scope="module")
def managed(weights: Path, short_dir: Path) -> Iterator[ManagedSidecar]:
    process = SidecarProcess(weights=weights, socket_path=short_dir / "ws.sock", backend="torch")
    with ManagedSidecar(process, timeout=3.0) as sidecar:
        yield sidecar


def _assert_identical(a, b) -> None:
    for name, value in a.to_arrays().items():
        other = b.to_arrays()[name]
        assert other.dtype == value.dtype and other.shape == value.shape, name
        assert np.array_equal(other, value), f"{name} differs"
    assert a.levels == b.levels and a.labels == b.labels


# ------------------------------------------------------------------------------ same results
@pytest.mark.parametrize("batch, dtype", [(1, np.float32), (5, np.float32), (4, np.float64)])
def test_out_of_process_is_bit_identical_to_in_process(
    managed: ManagedSidecar, in_process: Workspace, batch: int, dtype: type
) -> None:
    outputs = _outputs(batch, batch, dtype)
    remote = managed.update(outputs)
    _assert_identical(in_process.update(outputs), remote)
    assert remote.label(0) in LABELS and len(remote.removed_names(0)) == 2
    info = managed.info()
    assert info["fingerprint"] == in_process.fingerprint()
    assert info["backend"] == "torch" and info["protocol"] == PROTOCOL_VERSION
    assert info["pid"] == managed.process.pid


def test_bad_input_is_answered_as_input_error_and_the_connection_stays(
    managed: ManagedSidecar,
) -> None:
    restarts, pid = managed.restarts, managed.process.pid
    good = _outputs(1, 2)
    with pytest.raises(InputError, match="z_h must be"):
        managed.update({**good, "z_h": good["z_h"][:, :3]})
    with pytest.raises(InputError, match="lacks"):
        managed.update({"z_c": good["z_c"]})
    assert managed.update(good).probabilities.shape == (2, K)
    assert managed.restarts == restarts and managed.process.pid == pid


def test_client_does_not_need_torch(managed: ManagedSidecar, short_dir: Path, in_process) -> None:
    """A main process where `import torch` fails: the client and the numpy form still work."""
    np.savez(short_dir / "inputs.npz", **_outputs(9, 3))
    script = f"""
import sys
sys.modules["torch"] = None  # any attempt to import torch now raises ImportError
import numpy as np
from edge_sdk.errors import BackendError
from edge_sdk.sidecar import SidecarClient
from edge_sdk.workspace import Workspace
inputs = dict(np.load({str(short_dir / "inputs.npz")!r}))
with SidecarClient({str(managed.process.socket_path)!r}, timeout=5) as client:
    result = client.update(inputs)
np.savez({str(short_dir / "remote.npz")!r}, **result.to_arrays())
Workspace.load({str(short_dir / "workspace.safetensors")!r}, backend="numpy").update(inputs)
try:
    Workspace.load({str(short_dir / "workspace.safetensors")!r}, backend="torch")
except BackendError:
    print("no-torch-ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "no-torch-ok" in done.stdout
    remote = dict(np.load(short_dir / "remote.npz"))
    expected = in_process.update(dict(np.load(short_dir / "inputs.npz"))).to_arrays()
    for name, value in expected.items():
        assert np.array_equal(remote[name], value), name


# ---------------------------------------------------------------------------- dead and hung
def _wait_dead(pid: int, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")


def test_killed_server_gives_a_typed_error_within_the_timeout_then_restarts(
    managed: ManagedSidecar, in_process: Workspace
) -> None:
    outputs = _outputs(2, 3)
    managed.update(outputs)  # the managed client now holds a live connection
    pid, restarts = managed.process.pid, managed.restarts
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    client = SidecarClient(managed.process.socket_path, timeout=2.0)
    start = time.monotonic()
    # Refused, or accepted by a dying process and closed: either way the same typed error.
    with pytest.raises(SidecarUnavailableError, match="no workspace sidecar|closed the conn"):
        client.update(outputs)
    assert time.monotonic() - start < 2.0
    # The supervisor notices, restarts and answers the same request, identically.
    result = managed.update(outputs)
    assert managed.restarts == restarts + 1 and managed.process.pid != pid
    _assert_identical(in_process.update(outputs), result)


def test_hung_server_times_out_then_is_replaced(managed: ManagedSidecar) -> None:
    outputs = _outputs(3, 2)
    managed.update(outputs)
    pid, restarts = managed.process.pid, managed.restarts
    os.kill(pid, signal.SIGSTOP)  # alive but never answers
    try:
        client = SidecarClient(managed.process.socket_path, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(SidecarTimeoutError, match="did not answer within 1 s"):
            client.update(outputs)
        assert 0.95 < time.monotonic() - start < 2.5  # the timeout, plus scheduling slack
        managed.client.timeout = 1.0
        result = managed.update(outputs)  # times out, kills, restarts, retries
    finally:
        managed.client.timeout = 3.0
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert managed.restarts == restarts + 1 and managed.process.pid != pid
    assert result.probabilities.shape == (2, K)


def test_no_server_is_a_clear_error_at_once(short_dir: Path) -> None:
    client = SidecarClient(short_dir / "nobody.sock", timeout=5.0)
    start = time.monotonic()
    with pytest.raises(SidecarUnavailableError, match="edge-sdk sidecar"):
        client.ping()
    assert time.monotonic() - start < 1.0
    with pytest.raises(SidecarError, match="longer than"):
        SidecarClient("/tmp/" + "x" * 200)


def test_sidecar_exits_when_its_owner_dies(weights: Path, short_dir: Path) -> None:
    """A supervisor killed with SIGKILL leaves no orphan: the server watches its parent."""
    script = f"""
from edge_sdk.sidecar import SidecarProcess
import time
p = SidecarProcess(weights={str(weights)!r}, socket_path={str(short_dir / "orphan.sock")!r},
                   backend="numpy")
p.start()
print(p.pid, flush=True)
time.sleep(60)
"""
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        server_pid = int(owner.stdout.readline())
    finally:
        owner.kill()
        owner.wait()
    _wait_dead(server_pid, limit=5.0)


# ------------------------------------------------------------------------- malformed messages
def _raw(path: Path, data: bytes) -> tuple[dict, bool]:
    """Send raw bytes, read the reply; also report whether the server closed afterwards."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        header, _ = read_message(sock, time.monotonic() + 5.0)
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            closed = True
        except TimeoutError:
            closed = False
    return header, closed


def _frame(header: dict | bytes, payload: bytes = b"", *, version: int = PROTOCOL_VERSION) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREFIX.pack(MAGIC, version, 0, len(raw), len(payload)) + raw + payload


MALFORMED = {
    "bad magic": (b"GET / HTTP/1.1\r\n\r\n" + bytes(8), "magic"),
    "old version": (encode_message("ping", 1, version=0), "protocol version 0"),
    "new version": (encode_message("ping", 1, version=PROTOCOL_VERSION + 1), "version 2"),
    "oversized": (PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, 10, 1 << 40), "exceeds the limit"),
    "huge header": (PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, 1 << 30, 0), "header of"),
    "not json": (_frame(b"{not json"), "not UTF-8 JSON"),
    "not an object": (_frame(b"[1, 2]"), "JSON object"),
    "deep nesting": (_frame(b"[" * 60000), "not UTF-8 JSON"),
    "no id": (_frame({"kind": "ping"}), "integer 'id'"),
    "object dtype": (
        _frame({"kind": "update", "id": 1, "arrays": [{"name": "z", "dtype": "|O", "shape": [1]}]}),
        "dtype",
    ),
    "short payload": (
        _frame(
            {"kind": "update", "id": 1, "arrays": [{"name": "z", "dtype": "<f8", "shape": [4]}]},
            bytes(8),
        ),
        "payload has 8",
    ),
    "negative shape": (
        _frame(
            {"kind": "update", "id": 1, "arrays": [{"name": "z", "dtype": "<f8", "shape": [-1]}]}
        ),
        "bad shape",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_messages_are_answered_not_fatal(managed: ManagedSidecar, case: str) -> None:
    data, message = MALFORMED[case]
    header, closed = _raw(managed.process.socket_path, data)
    assert header["kind"] == "error" and header["error"]["type"] == "SidecarProtocolError"
    assert message in header["error"]["message"]
    assert closed  # a broken frame ends the connection ...
    assert managed.client.ping() < 1.0  # ... never the server
    assert managed.process.alive


def test_unknown_kind_and_unpickle_attempts_keep_the_connection(managed: ManagedSidecar) -> None:
    header, closed = _raw(managed.process.socket_path, encode_message("exec", 7))
    assert header["error"]["type"] == "SidecarProtocolError" and header["id"] == 7
    assert "unknown request kind" in header["error"]["message"] and not closed
    # A pickle payload declared as float bytes is just 8 numbers of garbage: an InputError
    # about the missing arrays, never code.
    pickled = b"\x80\x04\x95" + bytes(61)
    spec = {"kind": "update", "id": 8, "arrays": [{"name": "x", "dtype": "<f8", "shape": [8]}]}
    header, closed = _raw(managed.process.socket_path, _frame(spec, pickled))
    assert header["error"]["type"] == "InputError" and not closed


@contextlib.contextmanager
def _fake_server(path: Path, behaviour: Callable[[socket.socket], None]) -> Iterator[None]:
    """A thread that accepts one connection and does something wrong with it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                behaviour(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.close()
        thread.join(5)
        path.unlink(missing_ok=True)


def _answer(data: bytes) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        conn.recv(1 << 16)
        conn.sendall(data)

    return behaviour


@pytest.mark.parametrize(
    "reply, error, message",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + bytes(8), SidecarProtocolError, "magic"),
        (encode_message("ok", 1, version=9), SidecarProtocolError, "version 9"),
        (encode_message("ok", 99), SidecarProtocolError, "unexpected reply"),
        (
            PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, 2, 1 << 40) + b"{}",
            SidecarProtocolError,
            "limit",
        ),
        (
            encode_message("ok", 1, {"probabilities": np.ones((1, 3))}),
            SidecarProtocolError,
            "lacks",
        ),
        (PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, 50, 0) + b"{", SidecarUnavailableError, "closed"),
        (b"", SidecarUnavailableError, "closed the connection"),
        (encode_message("ok", 1, levels=7), SidecarProtocolError, "level or label names"),
    ],
)
def test_client_rejects_bad_replies(
    short_dir: Path, reply: bytes, error: type, message: str
) -> None:
    path = short_dir / "fake.sock"
    with _fake_server(path, _answer(reply)):
        client = SidecarClient(path, timeout=2.0)
        start = time.monotonic()
        with pytest.raises(error, match=message):
            client.update(_outputs(4, 1))
        assert time.monotonic() - start < 2.0


def test_client_times_out_on_a_silent_server(short_dir: Path) -> None:
    release = threading.Event()
    path = short_dir / "silent.sock"
    with _fake_server(path, lambda conn: release.wait(5)):
        client = SidecarClient(path, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(SidecarTimeoutError):
            client.ping()
        assert time.monotonic() - start < 1.0
        release.set()


def test_client_refuses_to_send_an_oversized_request(short_dir: Path) -> None:
    client = SidecarClient(short_dir / "unused.sock", max_payload=1024)
    with pytest.raises(SidecarProtocolError, match="exceeds"):
        client.update({"z_c": np.zeros((1, 1024))})


# ------------------------------------------------------------------ server in a thread; the CLI
def test_server_socket_rules(weights: Path, short_dir: Path) -> None:
    workspace = Workspace.load(weights, backend="numpy")
    path = short_dir / "thread.sock"
    server = SidecarServer(workspace, path, idle_timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert (path.stat().st_mode & 0o777) == 0o600
        with pytest.raises(SidecarError, match="already listening"):
            SidecarServer(workspace, path)
        with SidecarClient(path, timeout=2.0) as client:
            first = client.update(_outputs(5, 2))
            time.sleep(0.5)  # past the server's idle timeout: it drops the connection ...
            second = client.update(_outputs(5, 2))  # ... and the client reconnects once
        _assert_identical(first, second)
    finally:
        server.shutdown()
        thread.join(5)
    assert not path.exists()  # removed on the way out
    regular = short_dir / "regular.file"
    regular.write_text("not a socket")
    with pytest.raises(SidecarError, match="not a socket"):
        SidecarServer(workspace, regular)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file nobody listens on, like after a crash
    stale.close()
    SidecarServer(workspace, path)._server.server_close()  # replaces it


def test_cli_sidecar_serves_until_shutdown(weights: Path, short_dir: Path) -> None:
    path = short_dir / "cli.sock"
    command = [
        sys.executable,
        "-c",
        "from edge_sdk.cli import main; main()",
        "sidecar",
        "--socket",
        str(path),
        "--weights",
        str(weights),
        "--backend",
        "numpy",
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        client = SidecarClient(path, timeout=1.0)
        end = time.monotonic() + 30
        while True:
            try:
                info = client.info()
                break
            except SidecarUnavailableError:
                assert process.poll() is None and time.monotonic() < end
                time.sleep(0.05)
        assert info["backend"] == "numpy" and info["labels"] == list(LABELS)
        assert client.update(_outputs(6, 1)).probabilities.shape == (1, K)
        client.shutdown()
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert not path.exists()
    failed = subprocess.run(
        [*command[:5], str(short_dir / "x.sock"), "--weights", str(short_dir / "missing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2 and "error" in failed.stderr


def test_wire_format_is_plain_little_endian() -> None:
    data = encode_message("update", 3, {"a": np.arange(3, dtype=">f4"), "b": [1, 2]})
    magic, version, flags, header_len, payload_len = struct.unpack_from("<4sHHIQ", data)
    assert (magic, version, flags) == (MAGIC, PROTOCOL_VERSION, 0)
    header = json.loads(data[PREFIX.size : PREFIX.size + header_len])
    assert header["arrays"] == [
        {"name": "a", "dtype": "<f4", "shape": [3]},
        {"name": "b", "dtype": "<i8", "shape": [2]},
    ]
    payload = data[PREFIX.size + header_len :]
    assert payload_len == len(payload) == 12 + 16
    assert np.array_equal(np.frombuffer(payload[:12], "<f4"), [0, 1, 2])
    with pytest.raises(InputError):
        encode_message("update", 1, {"s": np.array(["text"])})
