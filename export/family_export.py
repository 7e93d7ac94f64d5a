"""Export any registered family to a bundle: ONNX + safetensors per graph, checked for parity.

Every graph is exported, checked by ``onnx.checker``, run through ONNX Runtime on the
family's example inputs (at several dynamic sizes) and compared with the PyTorch module;
a graph that disagrees beyond the family's tolerance fails the export. The measured
figures go into the manifest.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from edge_sdk.bundle import BundleWriter, ModelBundle
from edge_sdk.errors import ExportError
from edge_sdk.manifest import Manifest
from edge_sdk.models.families import BuiltGraph, FamilyBuild, get_family
from export.onnx_export import OPSET, export_graph, max_abs_diff
from runtimes.onnxruntime_backend import cpu_session


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from edge_sdk import __version__

    return {
        "edge_sdk": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": str(OPSET),
        "python": platform.python_version(),
    }


def _torch_outputs(graph: BuiltGraph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        result = graph.module(*(torch.from_numpy(feeds[t.name]) for t in graph.spec.inputs))
    values = result if isinstance(result, tuple) else (result,)
    return {t.name: v.numpy() for t, v in zip(graph.spec.outputs, values, strict=True)}


def _onnx_parity(graph: BuiltGraph, onnx_bytes: bytes) -> float:
    """Largest |torch - ORT| over the graph's example inputs."""
    session = cpu_session(onnx_bytes)
    worst = 0.0
    for feeds in graph.examples:
        ort = dict(
            zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True)
        )
        worst = max(worst, max_abs_diff(_torch_outputs(graph, feeds), ort))
    return worst


def _state_bytes(graph: BuiltGraph) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in graph.module.state_dict().items()}
    return save(
        state,
        metadata={"architecture": graph.spec.architecture, "config": json.dumps(graph.spec.config)},
    )


def write_bundle(family: str, build: FamilyBuild, out_dir: Path) -> ModelBundle:
    """Write a FamilyBuild to ``out_dir`` (ONNX + safetensors per graph, manifest last)."""
    tools = _tool_versions()
    writer = BundleWriter(out_dir)
    parity: dict[str, float] = {}
    metadata = {
        "edge_sdk.family": family,
        "edge_sdk.variant": build.variant,
        "edge_sdk.labels": json.dumps(build.labels),
    }
    for graph in build.graphs:
        onnx_bytes = export_graph(
            graph.module,
            graph.spec,
            graph.examples[0],
            {**metadata, "edge_sdk.graph": graph.spec.name},
        )
        diff = _onnx_parity(graph, onnx_bytes)
        if not diff <= build.parity_tolerance:
            raise ExportError(
                f"{family}/{graph.spec.name}: ONNX Runtime differs from PyTorch by {diff:.3g} "
                f"(tolerance {build.parity_tolerance:g})"
            )
        parity[f"{graph.spec.name}.onnx_fp32_max_abs"] = diff
        writer.add(
            f"{graph.spec.name}.onnx",
            onnx_bytes,
            format="onnx",
            graph=graph.spec.name,
            built_with=tools,
        )
        writer.add(
            f"{graph.spec.name}.safetensors",
            _state_bytes(graph),
            format="safetensors",
            graph=graph.spec.name,
            built_with=tools,
        )
    manifest = Manifest(
        family=family,
        variant=build.variant,
        labels=build.labels,
        graphs=tuple(g.spec for g in build.graphs),
        artifacts=(),
        preprocessing=build.preprocessing,
        weights=build.weights,
        provenance={"exporter": "edge_sdk export", **{f"tool.{k}": v for k, v in tools.items()}},
        parity=parity,
        config={**build.config, "parity_tolerance": build.parity_tolerance},
    )
    return writer.finish(manifest)


def export_family(
    name: str,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
) -> ModelBundle:
    """Build the family's modules (default or given weights) and write a verified bundle.

    ``config`` (a size name or JSON file) applies to families trained with our own code
    when no checkpoint is given; a checkpoint carries its own config.
    """
    family = get_family(name)
    weights = Path(checkpoint) if checkpoint else None
    if family.recipe is not None:
        from edge_sdk.models.training import build_from_checkpoint

        build = build_from_checkpoint(family, weights, config or "edge")
    else:
        if config is not None:
            raise ExportError(f"{name} takes its architecture from its weights, not --config")
        build = family.build(weights)
    return write_bundle(family.name, build, Path(out_dir))
