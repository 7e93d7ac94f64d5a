"""Bundle commands: ``devices`` (what runs each graph here) and ``export`` (a family to an
ONNX bundle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edge_sdk.cli.base import console, errors, fail
from edge_sdk.cli.common import JsonTables, check_writable, default_bundle
from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.reports.tables import fit, ranking_table

if TYPE_CHECKING:
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceInfo
    from runtimes.selection import Candidate


def devices(
    bundle: Annotated[
        Path | None, typer.Option(help="Rank backends for this bundle; default: built-in.")
    ] = None,
    as_json: JsonTables = False,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure",
            help="Time the CPU runtimes on each steady-shape graph now (kept for later runs).",
        ),
    ] = False,
) -> None:
    """Show this device and, per graph, the ranked backends with the reason for each.

    CPU runtimes measured on this machine (on first use, or now with ``--measure``) are
    ranked by their figures."""
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from runtimes.base import all_backends

    try:
        info = DeviceProbe().probe()
        opened = ModelBundle.load(bundle) if bundle else default_bundle(quiet=as_json)
        ranking = {
            g.name: measured_ranking(opened, g.name, info, measure) for g in opened.manifest.graphs
        }
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    manifest = opened.manifest
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


def measured_ranking(
    bundle: ModelBundle, graph: str, info: DeviceInfo, measure: bool
) -> list[Candidate]:
    """The graph's candidates ranked with this machine's cached timings (timed now first
    when ``measure``), as ``open_graph`` would pick; the static order where
    ``EDGE_SDK_SELECTION=static`` and nothing is timed now."""
    from runtimes.measured import cached_timings, choose, selection_mode
    from runtimes.selection import cpu_candidates, rank_candidates

    static = rank_candidates(bundle.manifest, graph, info)
    if not measure and selection_mode() == "static":
        return static
    candidates = cpu_candidates([c for c in static if c.usable])
    if measure and candidates:
        choose(bundle, bundle.manifest.graph(graph), candidates, info, remeasure=True)
    timings = cached_timings(candidates, info)
    return rank_candidates(bundle.manifest, graph, info, measured=timings) if timings else static


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
