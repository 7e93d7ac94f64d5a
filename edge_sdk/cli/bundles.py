"""Bundle commands: ``devices`` (what runs each graph here) and ``export`` (a family to an
ONNX bundle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge_sdk.cli.base import console, errors, fail
from edge_sdk.cli.common import JsonTables, check_writable, default_bundle
from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.reports.tables import fit, ranking_table


def devices(
    bundle: Annotated[
        Path | None, typer.Option(help="Rank backends for this bundle; default: built-in.")
    ] = None,
    as_json: JsonTables = False,
) -> None:
    """Show this device and, per graph, the ranked backends with the reason for each."""
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from runtimes.base import all_backends
    from runtimes.selection import rank_candidates

    try:
        info = DeviceProbe().probe()
        opened = ModelBundle.load(bundle) if bundle else default_bundle(quiet=as_json)
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    manifest = opened.manifest
    ranking = {g.name: rank_candidates(manifest, g.name, info) for g in manifest.graphs}
    if as_json:
        payload = {
            "device": info.to_dict(),
            "backends": {
                b.name: {"version": b.version(), "available": b.is_available()}
                for b in all_backends()
            },
            "bundle": f"{manifest.family}/{manifest.variant}",
            "ranking": {
                graph: [
                    {
                        "backend": c.backend,
                        "artifact": c.artifact.path,
                        "precision": c.artifact.precision,
                        "usable": c.usable,
                        "reason": c.reason,
                    }
                    for c in candidates
                ]
                for graph, candidates in ranking.items()
            },
        }
        console.print_json(json.dumps(payload))
        return
    device_table = Table(title="device", show_header=False)
    device_table.add_row(
        "cpu", f"{info.cpu.model} ({info.cpu.architecture}, {info.cpu.logical_cores} cores)"
    )
    device_table.add_row("cpu features", " ".join(info.cpu.features) or "-")
    device_table.add_row("gpus", "; ".join(g.name for g in info.gpus) or "none")
    device_table.add_row("jetson", info.jetson.model if info.jetson else "no")
    device_table.add_row("ort providers", " ".join(info.ort_providers) or "-")
    for backend in all_backends():
        fallback = "built in" if backend.is_available() else "not installed"
        device_table.add_row(backend.name, backend.version() or fallback)
    device_table.add_row("fingerprint", info.fingerprint)
    console.print(fit(device_table))
    console.print(fit(ranking_table(manifest.family, ranking)))


def export(
    family: Annotated[str, typer.Argument(help="Family name, e.g. face-fer7.")],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Weights to export instead of the defaults.")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Size (tiny, edge) or JSON file, for our own families.")
    ] = None,
    untrained: Annotated[
        bool,
        typer.Option(help="No checkpoint: export random weights (sizes/latency; marked so)."),
    ] = False,
) -> None:
    """Export a family to an ONNX bundle (checked against PyTorch before it is written)."""
    from edge_sdk.reports.progress import progress_steps

    check_writable(out, "--out", directory=True)
    try:
        from export.family_export import export_family
    except ImportError as exc:
        raise fail(
            InputError(f"export needs torch: pip install 'edge-sdk[torch]' ({exc})")
        ) from exc
    try:
        with progress_steps(f"export {family}", errors, lines=True) as on_step:
            bundle = export_family(
                family, out, checkpoint, config, on_step=on_step, untrained=untrained
            )
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    table = Table(title=f"{family} -> {bundle.root}")
    for column in ("graph", "artifacts", "max |torch - ORT|"):
        table.add_column(column)
    for graph in bundle.manifest.graphs:
        files = ", ".join(a.path for a in bundle.manifest.artifacts_for(graph.name))
        diff = bundle.manifest.parity.get(f"{graph.name}.onnx_fp32_max_abs", float("nan"))
        table.add_row(graph.name, files, f"{diff:.2e}")
    console.print(fit(table))
