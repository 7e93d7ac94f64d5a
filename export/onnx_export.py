"""PyTorch module -> checked ONNX bytes with named dynamic axes and embedded metadata.

The TorchScript-based exporter at opset 17 is used: it writes a single self-contained file
(no external ``.data`` side files to path-check) and opset 17 has LayerNormalization,
which TensorRT keeps in FP32 for the larger families.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from edge_sdk.errors import ExportError
from edge_sdk.manifest import GraphSpec

OPSET = 17


def export_graph(
    module: Any, graph: GraphSpec, example: dict[str, np.ndarray], metadata: dict[str, str]
) -> bytes:
    """Export ``module`` for ``graph`` (input/output names and dynamic dims from the spec)."""
    import onnx
    import torch

    args = tuple(torch.from_numpy(example[t.name]) for t in graph.inputs)
    dynamic_axes = {
        t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
        for t in graph.inputs + graph.outputs
    }
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(
                module.eval(),
                args,
                buffer,
                input_names=[t.name for t in graph.inputs],
                output_names=[t.name for t in graph.outputs],
                dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
                opset_version=OPSET,
                dynamo=False,
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ExportError(f"exporting graph {graph.name!r} failed: {exc}") from exc
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"graph {graph.name!r} fails onnx.checker: {exc}") from exc
    return model.SerializeToString()
