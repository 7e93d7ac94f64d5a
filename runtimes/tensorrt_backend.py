"""TensorRT engines through cuda-python, written against NVIDIA's documented API (TRT 10).

Whether an engine may run here is plain Python (:func:`engine_support`, tested on every
machine): an engine only loads on the GPU architecture and TensorRT minor version it was
built with, so an artifact whose ``target`` fingerprint differs from this device's is
refused with both fingerprints in the reason, and selection falls back to the next
candidate (ORT CUDA, then ORT CPU). The session itself (:class:`TrtSession`) needs an
NVIDIA GPU, ``tensorrt`` and ``cuda-python``; it has never run on a machine of this
project. pycuda is not used: it compiles against the driver at install time and does not
build where no driver is present (CI, containers being built).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import TENSORRT_DISTS, DeviceInfo, module_version
from edge_sdk.errors import BackendError
from edge_sdk.manifest import Artifact, GraphSpec
from runtimes.base import BaseSession, Support, register_backend


def engine_support(artifact: Artifact, device: DeviceInfo) -> Support:
    """Whether an engine built for ``artifact.target`` can load on ``device``."""
    if device.primary_gpu is None:
        return Support(False, "TensorRT engines need an NVIDIA GPU; none was found")
    if artifact.target != device.fingerprint:
        return Support(
            False,
            f"engine built for {artifact.target} (TensorRT "
            f"{artifact.built_with.get('tensorrt', '?')}, compute capability "
            f"{artifact.built_with.get('compute_capability', '?')}); this device is "
            f"{device.fingerprint}: rebuild with `edge-sdk build`",
        )
    return Support(True, f"TensorRT {artifact.precision} engine for {device.fingerprint}")


def cuda_runtime() -> object:
    """cuda-python's runtime module (``cuda.bindings.runtime`` since 12.6, else cudart).

    Public for the TensorRT calibrator, which drives the same copies."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def check_cuda(result: tuple) -> object:
    """cuda-python returns (error, value...); raise on a CUDA error."""
    error, *values = result
    if int(error) != 0:
        raise BackendError(f"CUDA call failed with error {int(error)}")
    return values[0] if len(values) == 1 else tuple(values)


class DeviceBuffers:
    """Device memory per tensor name, kept between calls and grown only when too small (no
    cudaMalloc/cudaFree per frame); ``free`` gives all of it back.

    Plain Python over cuda-python's runtime calls (``cudaMalloc``/``cudaFree`` returning
    ``(error, value...)``), so its bookkeeping is tested where no GPU is present.
    """

    def __init__(self, cuda: Any) -> None:
        self._cuda = cuda
        self._held: dict[str, tuple[int, int]] = {}

    def get(self, name: str, nbytes: int) -> int:
        """The device pointer for ``name``, at least ``nbytes`` large."""
        ptr, size = self._held.get(name, (0, 0))
        if nbytes > size:
            if ptr:
                del self._held[name]
                check_cuda(self._cuda.cudaFree(ptr))
            ptr, size = check_cuda(self._cuda.cudaMalloc(nbytes)), nbytes
            self._held[name] = (ptr, size)
        return ptr

    def pointer(self, name: str) -> int:
        """The pointer ``get`` last returned for ``name``."""
        return self._held[name][0]

    @property
    def nbytes(self) -> int:
        """Bytes of device memory held now."""
        return sum(size for _, size in self._held.values())

    def free(self) -> None:
        """Free every buffer, all of them even when one fails (then a BackendError)."""
        held, self._held = self._held, {}
        errors = [int(self._cuda.cudaFree(ptr)[0]) for ptr, _ in held.values()]
        failed = [e for e in errors if e != 0]
        if failed:
            raise BackendError(f"cudaFree failed for {len(failed)} buffers (errors {failed})")


class TrtSession(BaseSession):
    """One execution context; calls are serialised (a context is not thread-safe)."""

    def __init__(self, graph: GraphSpec, engine_bytes: bytes, precision: str) -> None:
        import tensorrt as trt

        super().__init__(graph, "tensorrt", precision)
        self._cuda = cuda_runtime()
        self._lock = threading.Lock()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine of {graph.name}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create a context for {graph.name}")
        self._stream = check_cuda(self._cuda.cudaStreamCreate())
        self._buffers = DeviceBuffers(self._cuda)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        copy_in = cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        copy_out = cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            self.check_open()  # close() may have won the lock
            for name in self.inputs:
                host = np.ascontiguousarray(feeds[name])
                ptr = self._buffers.get(name, max(1, host.nbytes))
                self._context.set_input_shape(name, host.shape)
                check_cuda(
                    cuda.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, copy_in, self._stream)
                )
                self._context.set_tensor_address(name, ptr)
            results: dict[str, np.ndarray] = {}
            for spec in self.graph.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                results[spec.name] = np.empty(shape, dtype=spec.dtype)
                ptr = self._buffers.get(spec.name, max(1, results[spec.name].nbytes))
                self._context.set_tensor_address(spec.name, ptr)
            if not self._context.execute_async_v3(self._stream):
                raise BackendError(f"TensorRT failed to run {self.graph.name}")
            for name, out in results.items():
                check_cuda(
                    cuda.cudaMemcpyAsync(
                        out.ctypes.data, self._buffers.pointer(name), out.nbytes, copy_out,
                        self._stream,
                    )
                )
            check_cuda(cuda.cudaStreamSynchronize(self._stream))
            return results

    def _release(self) -> None:
        """Free the device buffers and the stream, then drop the context before the engine
        and the engine before its runtime (the order NVIDIA documents); waits for a call in
        progress (the lock), whose stream was synchronised before it returned."""
        with self._lock:
            stream, self._stream = self._stream, None
            try:
                self._buffers.free()
            finally:
                self._context = None
                self._engine = None
                self._runtime = None
                check_cuda(self._cuda.cudaStreamDestroy(stream))


@dataclass(frozen=True)
class TensorRTBackend:
    """Serialized TensorRT engines (``format: tensorrt``) matched to the device fingerprint."""

    name: str = "tensorrt"
    rank: int = 5
    automatic: bool = True
    formats: frozenset[str] = frozenset({"tensorrt"})

    def is_available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "cuda"))

    def version(self) -> str | None:
        """TensorRT's version (pip metadata or JetPack's module), None without it."""
        return module_version("tensorrt", *TENSORRT_DISTS)

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        support = engine_support(artifact, device)
        if support.ok and not self.is_available():
            return Support(False, "tensorrt and cuda-python are not importable here")
        return support

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,  # ignored: the GPU runs it, there is no CPU pool
    ) -> TrtSession:
        return TrtSession(graph, bundle.read_artifact(artifact), artifact.precision)


register_backend(TensorRTBackend())
