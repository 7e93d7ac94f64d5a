"""PyTorch outputs recorded at export, as a reference backend for devices without torch.

It answers only the inputs export recorded (:mod:`edge_sdk.reference_outputs`) and says so
for anything else; ``edge-sdk verify`` feeds it exactly those inputs when torch itself cannot
run, so every runtime of the device is still compared with PyTorch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.errors import BackendError
from edge_sdk.manifest import Artifact, GraphSpec
from edge_sdk.reference_outputs import REFERENCE_FORMAT, RecordedExample, decode_examples
from runtimes.base import BaseSession, Support, register_backend

NAME = "torch-recorded"


def _key(feeds: dict[str, np.ndarray]) -> str:
    """Identity of a set of inputs: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(feeds):
        value = np.ascontiguousarray(feeds[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class RecordedSession(BaseSession):
    """Looks the outputs of recorded inputs up; any other input is a BackendError."""

    def __init__(self, graph: GraphSpec, examples: tuple[RecordedExample, ...]) -> None:
        super().__init__(graph, NAME, "fp32")
        self.examples = examples
        self._by_key = {_key(e.inputs): e.outputs for e in examples}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = self._by_key.get(_key(feeds))
        if found is None:
            raise BackendError(
                f"{self.graph.name}: no PyTorch output was recorded for these inputs (only the "
                f"{len(self.examples)} export examples are); install torch to compare others"
            )
        return {name: found[name].copy() for name in self.outputs}

    def _release(self) -> None:
        """Drop the recorded arrays."""
        self.examples = ()
        self._by_key = {}


@dataclass(frozen=True)
class RecordedBackend:
    """The export-time PyTorch outputs of a bundle (reference only, never automatic)."""

    name: str = NAME
    rank: int = 95
    automatic: bool = False
    formats: frozenset[str] = frozenset({REFERENCE_FORMAT})

    def is_available(self) -> bool:
        return True

    def version(self) -> str | None:
        """None: no runtime library, it looks arrays up (always available)."""
        return None

    def supports(self, graph: GraphSpec, artifact: Artifact, device: DeviceInfo) -> Support:
        return Support(True, "PyTorch outputs recorded at export (the export examples only)")

    def open(
        self,
        bundle: ModelBundle,
        graph: GraphSpec,
        artifact: Artifact,
        *,
        threads: int | None = None,  # nothing runs
    ) -> RecordedSession:
        examples = decode_examples(bundle.read_artifact(artifact), graph, artifact.path)
        return RecordedSession(graph, examples)


register_backend(RecordedBackend())
