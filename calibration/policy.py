"""A bundle's INT8 policy: which graphs to quantise, how, and how to judge each output.

The family declares its settings where it is registered (an :class:`~edge_sdk.int8_policy.
Int8Policy`); the exporter writes them into the manifest and :func:`policy_for` reads them
back from there, with no torch and no family module import. A bundle whose manifest records
none gets the documented default (min-max, Conv/MatMul/Gemm). Every family's decisions were
measured; the measurements and how to reproduce them are in ``benchmarks/int8_decisions.md``
next to ``benchmarks/int8.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_sdk.errors import ManifestError
from edge_sdk.int8_policy import MANIFEST_KEY, METHODS, QUANTISED_OPS, Int8Policy
from edge_sdk.manifest import Manifest

__all__ = ["METHODS", "QUANTISED_OPS", "TIE_MARGIN", "FamilyPolicy", "policy_for"]

# FP32 decisions closer than this (top-2 probability margin, |2p - 1| for a score) are left
# out of the gate's agreement; every INT8 flip measured in av-fbp, scene-cocoer and
# dialog-m2fnet was below it.
TIE_MARGIN = 0.05


@dataclass(frozen=True)
class FamilyPolicy:
    """How one family is calibrated.

    Attributes:
        method: default calibration method (``auto`` tries every method).
        skip_graphs: graphs kept FP32 (no INT8 artifact is written for them).
        op_types: op types given INT8 inputs; everything else stays FP32.
        kinds: graph -> output -> kind for the accuracy gate, as the bundle's manifest
            declares them (filled in by :func:`policy_for`).
        exclude_nodes: graph -> ``fnmatch`` patterns of node names kept FP32 although their
            op type is quantised.
        masks: graph -> output -> input whose zero entries mark padded rows of that output
            (left out of the gate: their values mean nothing in FP32 either).
        tie_margin: FP32 decisions closer than this are "undecided" for the gate's agreement.
        center_activations: rewrite each graph exactly before calibrating (fold chained
            MatMuls, centre LayerNorm outputs on their calibration mean; see
            :mod:`calibration.rewrites`), for tensors that are mostly a constant offset.
        quantize_outputs: False quantises only the inputs of the quantised ops, not their
            outputs (TensorRT's recommended placement; keeps INT8 off graph outputs).
    """

    method: str
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    skip_graphs: tuple[str, ...] = ()
    op_types: tuple[str, ...] = QUANTISED_OPS
    exclude_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    tie_margin: float = TIE_MARGIN
    center_activations: bool = False
    quantize_outputs: bool = True
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def policy_for(manifest: Manifest) -> FamilyPolicy:
    """The bundle's policy (``config["int8_policy"]``, or the default when the manifest
    records none), with the output kinds the manifest declares.

    Raises:
        ManifestError: the policy names a graph, output or input the bundle lacks.
    """
    declared = Int8Policy.from_manifest(manifest.config.get(MANIFEST_KEY))
    graphs = {g.name: g for g in manifest.graphs}
    named = {*declared.skip_graphs, *declared.exclude_nodes, *declared.masks}
    unknown = sorted(named - set(graphs))
    if unknown:
        raise ManifestError(
            f"config.{MANIFEST_KEY} of {manifest.family} names graphs {unknown}; the bundle "
            f"has {sorted(graphs)}"
        )
    for name, masks in declared.masks.items():
        outputs = {t.name for t in graphs[name].outputs}
        inputs = {t.name for t in graphs[name].inputs}
        for output, mask in masks.items():
            if output not in outputs or mask not in inputs:
                raise ManifestError(
                    f"config.{MANIFEST_KEY} of {manifest.family} masks {name}.{output} by "
                    f"{mask!r}; outputs {sorted(outputs)}, inputs {sorted(inputs)}"
                )
    return FamilyPolicy(
        method=declared.method,
        kinds={g.name: g.output_kinds() for g in manifest.graphs},
        skip_graphs=declared.skip_graphs,
        op_types=declared.op_types,
        exclude_nodes=dict(declared.exclude_nodes),
        masks=dict(declared.masks),
        center_activations=declared.center_activations,
        quantize_outputs=declared.quantize_outputs,
    )
