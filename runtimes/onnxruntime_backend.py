"""ONNX Runtime backends, one per execution provider (TensorRT EP, CUDA EP, CPU).

Sessions are created from the hash-checked bytes of the artifact. ``InferenceSession.run``
is thread-safe on one session, so one session serves every caller.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError
from edge_sdk.manifest import Artifact, GraphSpec
from runtimes.base import Support, check_feeds, register_backend


class OrtSession:
    """One ``onnxruntime.InferenceSession`` behind the Session protocol."""

    thread_safe = True

    def __init__(self, graph: GraphSpec, session: object, backend: str, precision: str) -> None:
        self.graph = graph
        self._session = session
        self.backend = backend
        self.precision = precision
        self.inputs = tuple(i.name for i in session.get_inputs())  # type: ignore[attr-defined]
        self.outputs = tuple(o.name for o in session.get_outputs())  # type: ignore[attr-defined]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.graph, feeds)
        values = self._session.run(self.outputs, feeds)  # type: ignore[attr-defined]
        return dict(zip(self.outputs, values, strict=True))


@dataclass(frozen=True)
class OrtBackend:
    """ONNX Runtime with one execution provider."""

    name: str
    rank: int
    provider: str
    needs_gpu: bool
    automatic: bool = True
    formats: frozenset[str] = frozenset({"onnx"})

    def is_available(self) -> bool:
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        import onnxruntime

        return self.provider in onnxruntime.get_available_providers()

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        if not self.is_available():
            return Support(False, f"onnxruntime on this machine lacks {self.provider}")
        if self.needs_gpu and not device.gpus:
            return Support(False, f"{self.provider} needs an NVIDIA GPU; none was found")
        return Support(True, f"ONNX Runtime {self.provider}, {artifact.precision} ONNX")

    def open(self, bundle: ModelBundle, graph: GraphSpec, artifact: Artifact) -> OrtSession:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("EDGE_SDK_THREADS", "0"))
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = onnxruntime.InferenceSession(
                bundle.read_artifact(artifact), options, providers=[self.provider]
            )
        # ORT's pybind errors (InvalidProtobuf, Fail, InvalidGraph, ...) share no public base.
        except Exception as exc:
            raise BackendError(f"ONNX Runtime cannot open {artifact.path}: {exc}") from exc
        return OrtSession(graph, session, self.name, artifact.precision)


register_backend(OrtBackend("ort-tensorrt", 10, "TensorrtExecutionProvider", True))
register_backend(OrtBackend("ort-cuda", 20, "CUDAExecutionProvider", True))
register_backend(OrtBackend("ort-cpu", 50, "CPUExecutionProvider", False))
