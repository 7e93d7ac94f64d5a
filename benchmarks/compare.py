"""ONNX Runtime FP32 (and INT8 where a bundle has it) against PyTorch eager, every family.

One run, this machine: each registered family is exported (or read from ``--bundles``),
then every graph is timed at its manifest ``opt`` sizes on three runtimes over the same
generated feeds: the PyTorch reference (eager, ``torch.inference_mode``), ONNX Runtime's CPU
provider on the FP32 ONNX, and on the INT8 ONNX when the bundle lists one. Medians and
ratios are printed with the machine, thread settings and load, since the figures mean
nothing without them. Run ``python benchmarks/compare.py [--config edge|tiny] [--int8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_sdk.bundle import ModelBundle
from edge_sdk.checks.bench import machine_info, time_calls
from edge_sdk.checks.feeds import DEFAULT_MAX_ELEMENTS, dims_at, fit_dims, generate_feeds
from edge_sdk.device import DeviceInfo, DeviceProbe
from edge_sdk.errors import EdgeSDKError
from edge_sdk.models.families import families
from runtimes.selection import open_graph

RUNTIMES = (
    ("torch", "torch", "fp32"),
    ("ort fp32", "ort-cpu", "fp32"),
    ("ort int8", "ort-cpu", "int8"),
)


def export_bundle(name: str, config: str, out: Path) -> ModelBundle:
    """The family's bundle: pretrained weights for imported families, ``config`` otherwise."""
    from edge_sdk.models.families import get_family
    from export.family_export import export_family

    family = get_family(name)
    # Random weights where there is no checkpoint: timings do not depend on their values.
    return export_family(
        name, out, config=config if family.recipe else None, untrained=family.recipe is not None
    )


def add_int8(bundle: ModelBundle, device: DeviceInfo) -> tuple[ModelBundle, str]:
    """Calibrate on the family's generated data (recipe families); (bundle, note)."""
    if any(a.precision == "int8" for a in bundle.manifest.artifacts):
        return bundle, "int8 from the bundle"
    try:
        from calibration.ort_int8 import calibrate_bundle

        calibrate_bundle(bundle.root, "synthetic", count=96, force=True, device=device)
    except (ImportError, EdgeSDKError) as exc:
        return bundle, f"no int8: {str(exc).splitlines()[0]}"
    reopened = ModelBundle.load(bundle.root)
    record = reopened.manifest.calibration
    gate = "gate passed" if record and record.passed else "gate failed, kept with --force"
    return reopened, f"int8 calibrated on synthetic data ({gate})"


def time_graph(
    bundle: ModelBundle, graph: str, device: DeviceInfo, warmup: int, runs: int
) -> dict[str, object]:
    """Median ms per runtime for one graph at its opt sizes (None where it cannot run)."""
    spec = bundle.manifest.graph(graph)
    dims, _ = fit_dims(spec, dims_at(spec, "opt"), DEFAULT_MAX_ELEMENTS)
    feeds = generate_feeds(spec, dims, seed=0).runs[0]
    row: dict[str, object] = {"graph": graph, "dims": dims}
    for label, backend, precision in RUNTIMES:
        try:
            session = open_graph(bundle, graph, device, backend=backend, precision=precision)
        except EdgeSDKError:
            row[label] = None
            continue
        latency = time_calls(lambda s=session: s.run(feeds), warmup, runs)
        row[label] = latency.p50
    return row


def _ratio(a: object, b: object) -> str:
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return f"{a / b:.2f}"
    return "-"


def _ms(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="edge", help="size of recipe families (edge, tiny)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per graph and runtime")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--families", default=None, help="comma-separated subset")
    parser.add_argument(
        "--bundles", type=Path, default=None, help="read <DIR>/<family> bundles instead"
    )
    parser.add_argument(
        "--int8", action="store_true", help="calibrate recipe families on synthetic data"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="intra-op threads for both runtimes (default: all cores)",
    )
    args = parser.parse_args()

    import torch

    # The same thread count for both runtimes, or the ratio measures the settings.
    torch.set_num_threads(args.threads)
    os.environ["EDGE_SDK_THREADS"] = str(args.threads)

    device = DeviceProbe().probe()
    info = machine_info(device)
    console = Console()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    console.print(
        f"[bold]machine[/bold]: {info['cpu']}, {info['logical_cores']} cores, "
        f"GPUs: {', '.join(info['gpus']) or 'none'}; load average {load}",
        soft_wrap=True,
    )
    console.print(
        f"onnxruntime {info['onnxruntime']} ({info['EDGE_SDK_THREADS']} intra-op threads), "
        f"torch {info['torch']} ({info['torch_threads']} threads), "
        f"numpy {np.__version__}; median of {args.runs} runs after {args.warmup} warm-up; "
        f"recipe families at config {args.config!r}",
        soft_wrap=True,
    )
    wanted = set(args.families.split(",")) if args.families else None
    table = Table(title="median ms per call at the manifest's opt sizes")
    for column in ("family", "graph", "dims", "torch", "ort fp32", "torch/ort", "ort int8",
                   "fp32/int8"):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("family", "graph", "dims") else "right"
        )
    rows = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="edge-sdk-compare-") as tmp:
        for family in families():
            if wanted and family.name not in wanted:
                continue
            if args.bundles and (args.bundles / family.name).is_dir():
                bundle = ModelBundle.load(args.bundles / family.name)
            else:
                bundle = export_bundle(family.name, args.config, Path(tmp) / family.name)
            if args.int8:
                bundle, note = add_int8(bundle, device)
                notes.append(f"{family.name}: {note}")
            totals = {label: 0.0 for label, _, _ in RUNTIMES}
            for i, graph in enumerate(g.name for g in bundle.manifest.graphs):
                row = time_graph(bundle, graph, device, args.warmup, args.runs)
                rows.append({"family": family.name, "variant": bundle.manifest.variant, **row})
                for label in totals:
                    value = row[label]
                    totals[label] = totals[label] + value if isinstance(value, float) else np.nan
                dims = ", ".join(f"{k}={v}" for k, v in sorted(row["dims"].items())) or "-"
                table.add_row(
                    family.name if i == 0 else "", graph, dims, _ms(row["torch"]),
                    _ms(row["ort fp32"]), _ratio(row["torch"], row["ort fp32"]),
                    _ms(row["ort int8"]), _ratio(row["ort fp32"], row["ort int8"]),
                )  # fmt: skip
            clean = {k: (v if np.isfinite(v) else None) for k, v in totals.items()}
            table.add_row(
                "", "[italic]all graphs[/italic]", "", _ms(clean["torch"]), _ms(clean["ort fp32"]),
                _ratio(clean["torch"], clean["ort fp32"]), _ms(clean["ort int8"]),
                _ratio(clean["ort fp32"], clean["ort int8"]), end_section=True,
            )  # fmt: skip
    table.caption = "torch/ort > 1: ONNX Runtime is faster; fp32/int8 > 1: INT8 is faster"
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "rows": rows, "notes": notes}, indent=2, default=str),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
