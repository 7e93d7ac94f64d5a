"""``edge-sdk serve``: a Recognizer served by NVIDIA Triton Inference Server through PyTriton.

PyTriton (``pip install 'edge-sdk[serve]'``) starts the ``tritonserver`` binary its wheel
ships and binds Python callables to Triton models: Triton owns the HTTP/gRPC endpoints, the
health (``/v2/health/ready``) and Prometheus metrics (``:metrics_port/metrics``) endpoints,
the dynamic batcher and the model instances; the callables here run the Recognizer. One model
per modality the loaded bundles serve (wire format: :mod:`edge_sdk.serving.codec`):

* ``face`` / ``face_pixels``: dynamic batching (``max_batch_size``, ``batch_delay_ms``). A
  batch of requests is decoded and detected image by image, then every face family runs
  once over all faces of the batch (:func:`~edge_sdk.pipelines.video.analyze_frames`), the
  graph that batches; per-image results equal ``predict(image)``'s.
* ``scene``, ``audio``, ``video``, ``dialog``: one ``Recognizer.predict`` per request.
* ``info``: what is served (the client's labels, modalities, backends).

Each model has ``workers`` instances (parallel callables; the Recognizer is thread-safe).

Two facts about the Triton Python backend stub PyTriton 0.7.0 ships (the process that
relays each request to these callables), found on this project's CPU machine:

* It embeds CPython in isolated mode (``PYTHONPATH`` is ignored) and loads whichever
  ``libpython3.X.so`` the dynamic linker finds first. Under pyenv/conda that is the system's
  (e.g. Debian's ``/usr/lib``, with ``dist-packages`` and no numpy): every model then fails
  to load with ``No module named 'numpy'``. :meth:`TritonServer.start` puts this interpreter's
  ``LIBDIR`` first on the server's ``LD_LIBRARY_PATH``.
* Its numpy bridge is built for NumPy 1 (pybind11 reads ``PyArray_Descr.elsize`` at the
  NumPy-1 offset): under NumPy 2 every output tensor arrives empty (``binary_data_size`` 0).
  nvidia-pytriton pins ``numpy<2`` for this reason; :func:`check_environment` refuses a
  NumPy 2 environment with that explanation instead of serving empty answers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import BackendError, EdgeSDKError, InputError
from edge_sdk.serving import codec
from edge_sdk.serving.handlers import Handlers, served_models

LOG = logging.getLogger("edge_sdk.serving")
PYTRITON = "nvidia-pytriton==0.7.0"
START_ATTEMPTS = 3
HANDSHAKE_RACE = "get_config_from_handshake_server"  # in PyTriton's error (TritonServer.start)


@dataclass(frozen=True)
class ServeOptions:
    """How ``edge-sdk serve`` runs Triton.

    Attributes:
        http_port, grpc_port, metrics_port: Triton's endpoints (0 is refused: Triton needs
            the port before it binds it, so pick free ports yourself).
        address: interface Triton binds (``0.0.0.0``: every interface).
        workers: instances of every model (parallel requests); also the Recognizer's workers.
        max_batch_size: most face requests Triton stacks into one call (1: no batching).
        batch_delay_ms: how long Triton may hold a face request to fill a batch.
        exit_timeout_s: on shutdown, how long Triton waits for requests in flight.
        log_file: Triton's own log (None: PyTriton keeps it in memory).
    """

    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    address: str = "0.0.0.0"
    workers: int = 2
    max_batch_size: int = 16
    batch_delay_ms: float = 0.0
    exit_timeout_s: int = 30
    log_file: Path | None = None

    def check(self) -> None:
        """InputError for a value Triton would refuse or misread."""
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port,
                 "metrics_port": self.metrics_port}  # fmt: skip
        for name, port in ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise InputError(f"{name} must be a port number 1-65535, got {port!r}")
        if len(set(ports.values())) != len(ports):
            raise InputError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        for name in ("workers", "max_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.batch_delay_ms <= 10_000:
            raise InputError(f"batch_delay_ms must be 0-10000, got {self.batch_delay_ms!r}")


# --------------------------------------------------------------------------- environment
def check_environment(numpy_version: str | None = None) -> None:
    """BackendError unless PyTriton can serve from this Python environment (module docs);
    ``numpy_version`` defaults to the installed numpy's."""
    try:
        import pytriton  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"edge-sdk serve needs PyTriton: pip install 'edge-sdk[serve]' ({exc})"
        ) from exc
    version = numpy_version or np.__version__
    if int(version.split(".")[0]) >= 2:
        raise BackendError(
            f"this environment has numpy {version}, but the Triton Python backend stub "
            f"that {PYTRITON} ships is built for NumPy 1 and answers every request with empty "
            "tensors under NumPy 2 (nvidia-pytriton requires numpy<2): serve from an "
            "environment where pip resolved 'edge-sdk[serve]' (numpy<2)"
        )


def stub_library_path(environ: dict[str, str] | None = None) -> str:
    """``LD_LIBRARY_PATH`` with this interpreter's libpython directory first, so the Triton
    Python backend stub loads this Python and its site-packages (module docs)."""
    current = (os.environ if environ is None else environ).get("LD_LIBRARY_PATH", "")
    libdir = sysconfig.get_config_var("LIBDIR")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir:
        return current
    parts = [p for p in current.split(os.pathsep) if p and p != libdir]
    return os.pathsep.join([libdir, *parts])


# --------------------------------------------------------------------------- server
class TritonServer:
    """Triton with the recognizer's models bound; ``start()``/``stop()`` or a with-block.

    The recognizer is not closed here (its owner closes it)."""

    def __init__(self, recognizer: Any, options: ServeOptions | None = None) -> None:
        self.recognizer = recognizer
        self.options = options or ServeOptions()
        self.options.check()
        self.handlers = Handlers(recognizer)
        self.models: list[str] = []
        self._triton: Any = None

    def start(self) -> None:
        """Start tritonserver, load every model and wait until they are ready.

        PyTriton 0.7.0 has a start-up race between the instances of one model: the first
        instance's stub binds a Unix socket and only then listens on it, and a second
        instance that connects in between is refused (``ConnectionRefusedError`` in
        ``get_config_from_handshake_server``; seen here on a busy 2-core machine with two
        instances per model). Such a start is retried from scratch, ``START_ATTEMPTS``
        times in all; any other failure is raised at once.
        """
        check_environment()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once()
                return
            except BackendError as exc:
                if attempt == START_ATTEMPTS or HANDSHAKE_RACE not in str(exc):
                    raise
                LOG.warning("PyTriton's instance handshake raced (start %d of %d); restarting",
                            attempt, START_ATTEMPTS)  # fmt: skip

    def _start_once(self) -> None:
        from pytriton.triton import Triton, TritonConfig

        opts = self.options
        os.environ["LD_LIBRARY_PATH"] = stub_library_path()  # read when tritonserver starts
        config = TritonConfig(
            http_address=opts.address, http_port=opts.http_port,
            grpc_address=opts.address, grpc_port=opts.grpc_port,
            metrics_address=opts.address, metrics_port=opts.metrics_port,
            exit_timeout_secs=opts.exit_timeout_s, log_file=opts.log_file,
            allow_gpu_metrics=False,
        )  # fmt: skip
        self.models = []
        self._triton = Triton(config=config)
        try:
            self._triton.run()
            for name, bind in self._bindings():
                self.models.append(name)  # before loading: a failed load is unloaded too
                bind()
        except Exception as exc:
            self.stop()
            if isinstance(exc, EdgeSDKError):
                raise
            raise BackendError(f"Triton did not start: {type(exc).__name__}: {exc}") from exc

    def _bindings(self) -> Iterator[tuple[str, Callable[[], None]]]:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        opts = self.options
        workers = opts.workers
        served = served_models(self.recognizer)
        result = [
            Tensor(name=codec.RESULT, dtype=np.bytes_, shape=(1,)),
            Tensor(name=codec.ERROR, dtype=np.bytes_, shape=(1,)),
            Tensor(name=codec.PROBABILITIES, dtype=np.float32, shape=(-1, -1)),
        ]
        single = ModelConfig(max_batch_size=1)

        def bind(name: str, fn: Callable, inputs: list, outputs: list, config: Any,
                 instances: int = workers) -> tuple[str, Callable[[], None]]:  # fmt: skip
            return name, lambda: self._triton.bind(
                model_name=name, infer_func=[fn] * instances, inputs=inputs,
                outputs=outputs, config=config, strict=True,
            )  # fmt: skip

        if "face" in served:
            batching = ModelConfig(
                max_batch_size=opts.max_batch_size,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=int(opts.batch_delay_ms * 1000)
                ),
            )
            face_outputs = [*result, Tensor(name=codec.BOXES, dtype=np.float32, shape=(-1, 4))]
            yield bind(codec.FACE, self.handlers.face,
                       [Tensor(name=codec.IMAGE, dtype=np.bytes_, shape=(1,))],
                       face_outputs, batching)  # fmt: skip
            yield bind(codec.FACE_PIXELS, self.handlers.face_pixels,
                       [Tensor(name=codec.PIXELS, dtype=np.uint8, shape=(-1, -1, 3))],
                       face_outputs, batching)  # fmt: skip
        request_inputs = [
            Tensor(name=codec.REQUEST, dtype=np.bytes_, shape=(1,)),
            Tensor(name=codec.MEDIA, dtype=np.bytes_, shape=(-1,), optional=True),
        ]
        for modality in ("scene", "audio", "video", "dialog"):
            if modality in served:
                yield bind(modality, self.handlers.request_model(modality),
                           request_inputs, result, single)  # fmt: skip
        yield bind(codec.INFO, self.handlers.info,
                   [Tensor(name=codec.REQUEST, dtype=np.bytes_, shape=(1,))],
                   result, single, instances=1)  # fmt: skip

    def is_alive(self) -> bool:
        """Whether tritonserver and every model's relay still run."""
        return self._triton is not None and self._triton.is_alive()

    def stop(self) -> None:
        """Unload the models, then stop tritonserver (requests in flight finish first).

        Unloading first matters: Triton keeps each model PyTriton loads in
        ``/tmp/folderXXXXXX`` and deletes it only on unload, while PyTriton 0.7.0's
        ``stop()`` stops the server first (one folder per model was left behind per run).
        Unloading through Triton's API while PyTriton's relay still runs also lets each
        stub finish cleanly.
        """
        if self._triton is None:
            return
        triton, self._triton = self._triton, None
        try:
            self._unload(triton.get_access_token())
        except Exception as exc:  # noqa: BLE001 - a dead server must still be stopped
            LOG.warning("unloading the models failed (%s); stopping Triton anyway", exc)
        triton.stop()

    def _unload(self, token: str | None) -> None:
        """Unload every bound model (the repository API is behind PyTriton's token)."""
        import tritonclient.http as http
        from pytriton.client.auth import create_auth_headers

        headers = create_auth_headers(token, "http") if token else None
        host = "localhost" if self.options.address in ("0.0.0.0", "::") else self.options.address
        client = http.InferenceServerClient(f"{host}:{self.options.http_port}")
        try:
            for name in reversed(self.models):
                client.unload_model(name, headers=headers)
            self.models = []
        finally:
            client.close()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the main thread then shuts down in order)."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_forever(
    recognizer: Any,
    options: ServeOptions | None = None,
    on_ready: Callable[[TritonServer], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully: Triton
    finishes the requests in flight and unloads the models, then the recognizer closes.

    Raises:
        BackendError: Triton cannot start here, or it died while serving.
    """
    stop = stop or threading.Event()
    server = TritonServer(recognizer, options)
    in_main = threading.current_thread() is threading.main_thread()
    with _stop_on_signals(stop) if in_main else _nothing():
        try:
            server.start()
            if on_ready is not None:
                on_ready(server)
            while not stop.wait(0.5):
                if not server.is_alive():
                    raise BackendError("Triton Inference Server stopped unexpectedly")
        finally:
            started = time.perf_counter()
            server.stop()
            recognizer.close()
            LOG.info("stopped in %.1f s", time.perf_counter() - started)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def spawn(
    args: Sequence[str],
    http_port: int,
    log: Path,
    *,
    python: str | None = None,
    timeout: float = 180.0,
) -> subprocess.Popen:
    """Start ``edge-sdk serve ARGS`` (ARGS give ``--http-port http_port``) as a child process
    writing to ``log``; return once it serves, i.e. its last-bound model (``info``) is ready:
    Triton's ``/v2/health/ready`` turns ready before PyTriton has loaded any model.

    ``python`` runs it (default: this interpreter); stop it with SIGTERM (graceful).

    Raises:
        BackendError: the server exited or was not ready within ``timeout`` (with its log).
    """
    import urllib.error
    import urllib.request

    command = [python or sys.executable, "-c", "from edge_sdk.cli import main; main()",
               "serve", *args]  # fmt: skip
    with Path(log).open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}/v2/models/{codec.INFO}/ready"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = Path(log).read_text(errors="replace")[-6000:]
            raise BackendError(f"edge-sdk serve did not come up; its log ends:\n{tail}")
        time.sleep(0.25)


def endpoints(options: ServeOptions) -> dict[str, str]:
    """Where clients and monitors reach a server started with ``options`` on this host."""
    host = "localhost" if options.address in ("0.0.0.0", "::") else options.address
    return {
        "http": f"http://{host}:{options.http_port}",
        "grpc": f"grpc://{host}:{options.grpc_port}",
        "health": f"http://{host}:{options.http_port}/v2/health/ready",
        "metrics": f"http://{host}:{options.metrics_port}/metrics",
    }


def free_ports(count: int) -> list[int]:
    """``count`` distinct local TCP ports free right now (for ``serve`` in tests and
    benchmarks; another process may still take one before it is bound)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
