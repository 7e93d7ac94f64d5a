"""The PyTorch reference backend: rebuilds the module named in the manifest, loads safetensors.

It is what the exported graphs are compared against, so it is never picked automatically
ahead of a deployment backend; ask for it by name (``backend="torch"``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, importable, module_version
from edge_sdk.errors import BackendError
from edge_sdk.manifest import Artifact, GraphSpec
from runtimes.base import BaseSession, Support, register_backend


def load_safetensors_module(bundle: ModelBundle, graph: GraphSpec, artifact: Artifact) -> Any:
    """Rebuild ``graph.architecture`` and load the artifact's tensors strictly."""
    from safetensors.torch import load as load_tensors

    from edge_sdk.models import build_module

    module = build_module(graph.architecture, graph.config)
    try:
        state = load_tensors(bundle.read_artifact(artifact))
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(
            f"weights {artifact.path} do not fit {graph.architecture}: {exc}"
        ) from exc
    return module.eval()


class TorchSession(BaseSession):
    """Runs the reference module under ``torch.inference_mode``; serialised by a lock."""

    def __init__(self, graph: GraphSpec, module: Any) -> None:
        super().__init__(graph, "torch", "fp32")
        self._module = module
        self._lock = threading.Lock()

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in self.inputs]
        with self._lock, torch.inference_mode():
            self.check_open()  # close() may have won the lock
            result = self._module(*args)
        values = result if isinstance(result, tuple) else (result,)
        return {n: v.numpy() for n, v in zip(self.outputs, values, strict=True)}

    def _release(self) -> None:
        """Drop the module and its weights (after a call in progress)."""
        with self._lock:
            self._module = None


@dataclass(frozen=True)
class TorchBackend:
    """PyTorch eager on the CPU: the reference every exported graph must match."""

    name: str = "torch"
    rank: int = 90
    automatic: bool = False
    formats: frozenset[str] = frozenset({"safetensors"})

    def is_available(self) -> bool:
        return importable("torch")

    def version(self) -> str | None:
        """PyTorch's version, None without it."""
        return module_version("torch")

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        if not self.is_available():
            return Support(False, "torch is not installed (pip install 'edge-sdk[torch]')")
        return Support(True, "PyTorch eager reference (fp32, CPU)")

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,  # ignored: torch sets threads per process
    ) -> TorchSession:
        return TorchSession(graph, load_safetensors_module(bundle, graph, artifact))


register_backend(TorchBackend())
