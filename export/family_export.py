"""Export any registered family to a bundle: ONNX + safetensors per graph, checked for parity.

Every graph is exported, checked by ``onnx.checker``, run through ONNX Runtime on the
family's example inputs (at several dynamic sizes) and compared with the PyTorch module
output by output, by the parity rule of each output's kind (:mod:`edge_sdk.parity`); a
graph that disagrees beyond a rule fails the export. The rules and the measured figures
go into the manifest.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.bundle import BundleWriter, ModelBundle, sha256_file
from edge_sdk.errors import ExportError
from edge_sdk.int8_policy import MANIFEST_KEY as INT8_MANIFEST_KEY
from edge_sdk.int8_policy import Int8Policy
from edge_sdk.manifest import Manifest
from edge_sdk.models.families import BuiltGraph, FamilyBuild, get_family
from edge_sdk.parity import DEFAULT_RULES, ParityCheck, check_parity, rules_to_manifest
from edge_sdk.reference_outputs import (
    REFERENCE_FORMAT,
    RecordedExample,
    encode_examples,
    reference_path,
)
from export.onnx_export import OPSET, export_graph
from runtimes.onnxruntime_backend import cpu_session


@dataclass(frozen=True)
class KernelPath:
    """ONNX Runtime CPU session settings that select a kernel path (see ``cpu_session``)."""

    name: str
    threads: int | None = None
    optimize: bool = True


DEPLOYED = KernelPath("deployed")
# Other kernel paths than this machine's default, as another CPU or thread count takes:
# the export parity tests check every family under each.
OTHER_KERNEL_PATHS = (
    KernelPath("one-thread", threads=1),
    KernelPath("unoptimised", optimize=False),
)


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from edge_sdk.version import __version__

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


def _onnx_parity(
    graph: BuiltGraph,
    onnx_bytes: bytes,
    paths: Sequence[KernelPath],
    references: Sequence[dict[str, np.ndarray]],
) -> dict[str, tuple[ParityCheck, str]]:
    """The worst parity check of each output (and where it happened) over the graph's
    example inputs (``references``: PyTorch's outputs for them) and the kernel paths."""
    kinds = graph.spec.output_kinds()
    worst: dict[str, tuple[ParityCheck, str]] = {}
    for path in paths:
        session = cpu_session(onnx_bytes, threads=path.threads, optimize=path.optimize)
        names = [o.name for o in session.get_outputs()]
        for index, (feeds, reference) in enumerate(zip(graph.examples, references, strict=True)):
            ort = dict(zip(names, session.run(None, feeds), strict=True))
            for name, ref in reference.items():
                if ort[name].shape != ref.shape:
                    raise ExportError(
                        f"{graph.spec.name}.{name}: ONNX Runtime shape {ort[name].shape} vs "
                        f"PyTorch {ref.shape} on example {index}"
                    )
                check = check_parity(kinds[name], ref, ort[name])
                if name not in worst or check.ratio > worst[name][0].ratio:
                    worst[name] = (check, f"example {index}, {path.name} kernels")
    return worst


def _state_bytes(graph: BuiltGraph) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in graph.module.state_dict().items()}
    return save(
        state,
        metadata={"architecture": graph.spec.architecture, "config": json.dumps(graph.spec.config)},
    )


# on_step(done, total, step): called as each stage starts (see edge_sdk.reports.progress).
StepCallback = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, step: str) -> None:
    """The progress callback when nobody listens."""


def write_bundle(
    family: str,
    build: FamilyBuild,
    out_dir: Path,
    kernel_paths: Sequence[KernelPath] = (DEPLOYED,),
    on_step: StepCallback | None = None,
    provenance: dict[str, str] | None = None,
    int8: Int8Policy | None = None,
) -> ModelBundle:
    """Write a FamilyBuild to ``out_dir`` (ONNX + safetensors per graph, manifest last).

    ``kernel_paths``: ONNX Runtime session settings parity must hold under (the tests add
    :data:`OTHER_KERNEL_PATHS`). ``on_step`` hears of each stage (an export takes seconds
    to minutes, so the command line shows them). ``int8``: the INT8 policy recorded in the
    manifest (``config["int8_policy"]``, read by calibration); None: the one the registered
    family declares.
    """
    policy = int8 if int8 is not None else get_family(family).int8
    report = on_step or _no_progress
    total = 2 * len(build.graphs) + 1
    tools = _tool_versions()
    writer = BundleWriter(out_dir)
    parity: dict[str, float] = {}
    metadata = {
        "edge_sdk.family": family,
        "edge_sdk.variant": build.variant,
        "edge_sdk.labels": json.dumps(build.labels),
    }
    for index, graph in enumerate(build.graphs):
        report(2 * index, total, f"ONNX export of {graph.spec.name}")
        onnx_bytes = export_graph(
            graph.module,
            graph.spec,
            graph.examples[0],
            {**metadata, "edge_sdk.graph": graph.spec.name},
        )
        report(2 * index + 1, total, f"parity of {graph.spec.name} against PyTorch")
        references = [_torch_outputs(graph, feeds) for feeds in graph.examples]
        parity.update(_checked_parity(family, graph, onnx_bytes, kernel_paths, references))
        _add_graph_files(writer, graph, onnx_bytes, references, tools)
    report(total - 1, total, "writing the manifest")
    manifest = Manifest(
        family=family,
        variant=build.variant,
        labels=build.labels,
        graphs=tuple(g.spec for g in build.graphs),
        artifacts=(),
        preprocessing=build.preprocessing,
        weights=build.weights,
        provenance={
            "exporter": "edge_sdk export",
            "weights_state": build.weights_state,
            **(provenance or {}),
            **{f"tool.{k}": v for k, v in tools.items()},
        },
        parity=parity,
        config={
            **build.config,
            "parity_rules": rules_to_manifest(DEFAULT_RULES),
            INT8_MANIFEST_KEY: policy.to_manifest(),
        },
    )
    return writer.finish(manifest)


def _checked_parity(
    family: str,
    graph: BuiltGraph,
    onnx_bytes: bytes,
    kernel_paths: Sequence[KernelPath],
    references: Sequence[dict[str, np.ndarray]],
) -> dict[str, float]:
    """The graph's parity figures for the manifest; ExportError when an output breaks its
    rule (ONNX Runtime differs from PyTorch) under any kernel path."""
    checks = _onnx_parity(graph, onnx_bytes, kernel_paths, references)
    failed = [
        f"{name}: {check.describe()} at {where}"
        for name, (check, where) in checks.items()
        if not check.passed
    ]
    if failed:
        raise ExportError(
            f"{family}/{graph.spec.name}: ONNX Runtime differs from PyTorch beyond the "
            f"parity rules (edge_sdk.parity): {'; '.join(failed)}"
        )
    parity = {f"{graph.spec.name}.onnx_fp32_max_abs": max(c.max_abs for c, _ in checks.values())}
    for name, (check, _) in checks.items():
        parity[f"{graph.spec.name}.{name}.max_abs"] = check.max_abs
        parity[f"{graph.spec.name}.{name}.ratio"] = check.ratio
    return parity


def _add_graph_files(
    writer: BundleWriter,
    graph: BuiltGraph,
    onnx_bytes: bytes,
    references: Sequence[dict[str, np.ndarray]],
    tools: dict[str, str],
) -> None:
    """The graph's ONNX, its weights (safetensors) and its recorded PyTorch outputs."""
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
    recorded = [
        RecordedExample(dict(feeds), outputs)
        for feeds, outputs in zip(graph.examples, references, strict=True)
    ]
    writer.add(
        reference_path(graph.spec.name),
        encode_examples(recorded),
        format=REFERENCE_FORMAT,
        graph=graph.spec.name,
        built_with=tools,
    )


def export_family(
    name: str,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    kernel_paths: Sequence[KernelPath] = (DEPLOYED,),
    on_step: StepCallback | None = None,
    untrained: bool = False,
) -> ModelBundle:
    """Build the family's modules (default or given weights) and write a verified bundle.

    ``config`` (a size name or JSON file) applies to families trained with our own code
    when no checkpoint is given; a checkpoint carries its own config. ``on_step`` hears of
    each stage (:func:`write_bundle`).

    A family trained with edge-sdk's code has no weights without a checkpoint: exporting
    its random initialisation takes ``untrained=True`` (sizes, latency, parity), and the
    bundle says so (``provenance.weights_state``), so that loading it for predictions is
    refused unless asked for explicitly.
    """
    family = get_family(name)
    weights = Path(checkpoint) if checkpoint else None
    if family.recipe is None and config is not None:
        raise ExportError(f"{name} takes its architecture from its weights, not --config")
    if family.recipe is not None and weights is None and not untrained:
        raise ExportError(
            f"{name} has no trained weights without a checkpoint: train it "
            f"(edge-sdk train {name} --out ckpt.safetensors --data FORMAT:PATH) and export "
            "with --checkpoint, or pass --untrained (untrained=True) to export its random "
            "initialisation for size, latency and parity work"
        )
    (on_step or _no_progress)(0, 0, "building the PyTorch modules")
    if family.recipe is not None:
        from edge_sdk.models.training import build_from_checkpoint

        build = build_from_checkpoint(family, weights, config or "edge")
    else:
        build = family.build(weights)
    provenance = {"checkpoint_sha256": sha256_file(weights)} if weights is not None else {}
    if weights is not None and weights.suffix == ".safetensors":
        from edge_sdk.models.training import training_metadata

        record = training_metadata(weights)
        if record is not None:  # data set, sample counts, epochs, validation figures (JSON)
            provenance["training"] = record
    return write_bundle(family.name, build, Path(out_dir), kernel_paths, on_step, provenance)
