"""Deployment commands: ``calibrate`` (ORT INT8), ``build`` (TensorRT engines),
``export-triton`` (a Triton model repository), ``doctor``.

Kept apart from the prediction commands so each stays readable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge_sdk.cli.base import console, fail
from edge_sdk.errors import EdgeSDKError
from edge_sdk.reports.tables import fit


def _gate_table(result: object) -> Table:
    table = Table(title="INT8 accuracy gate (held-out samples, INT8 vs FP32)")
    for column in ("graph", "method", "output", "kind", "samples", "figures", "verdict"):
        table.add_column(column)
    for graph in result.graphs:  # type: ignore[attr-defined]
        for f in graph.chosen.figures:
            figures = {
                "agreement": f.agreement,
                "max_prob_diff": f.max_prob_diff,
                "ccc_delta": f.ccc_delta,
                "min_cosine": f.min_cosine,
            }
            shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if v is not None)
            verdict = "[green]pass[/]" if f.passed else f"[red]fail[/] {'; '.join(f.failures)}"
            table.add_row(
                graph.graph, graph.chosen.method, f.output, f.kind, str(f.samples), shown, verdict
            )
    return table


def calibrate(
    bundle: Annotated[Path, typer.Argument(help="FP32 bundle directory (changed in place).")],
    data: Annotated[
        str, typer.Option(help="Image folder or list file, 'synthetic', or FEEDS.npz.")
    ],
    method: Annotated[
        str, typer.Option(help="default, auto, minmax, entropy or percentile.")
    ] = "default",
    count: Annotated[int | None, typer.Option(help="Items drawn from --data.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling and split seed.")] = 0,
    holdout: Annotated[float, typer.Option(help="Fraction held out for the gate.")] = 0.2,
    holdout_data: Annotated[
        str | None, typer.Option(help="Separate data for the gate (all --data calibrates).")
    ] = None,
    min_agreement: Annotated[float, typer.Option(help="Gate: top-1 agreement.")] = 0.99,
    max_prob_diff: Annotated[float, typer.Option(help="Gate: max probability diff.")] = 0.25,
    max_ccc_delta: Annotated[float, typer.Option(help="Gate: 1 - CCC(FP32, INT8).")] = 0.02,
    min_cosine: Annotated[float, typer.Option(help="Gate: embedding cosine.")] = 0.98,
    force: Annotated[bool, typer.Option(help="Keep INT8 models that fail the gate.")] = False,
    cpu_int8: Annotated[
        str,
        typer.Option(
            help="CPU INT8 form: auto (kept where it passes and runs faster here), always, never."
        ),
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Quantise a bundle to INT8 (QDQ) with ONNX Runtime and gate it against FP32."""
    from calibration.gate import GateThresholds
    from calibration.ort_int8 import GateFailedError, calibrate_bundle

    thresholds = GateThresholds(min_agreement, max_prob_diff, max_ccc_delta, min_cosine)
    try:
        with console.status("calibrating (recording feeds, quantising, gating)..."):
            result = calibrate_bundle(
                bundle,
                data,
                method=method,
                count=count,
                seed=seed,
                holdout=holdout,
                holdout_data=holdout_data,
                thresholds=thresholds,
                force=force,
                cpu_int8=cpu_int8,
            )
    except GateFailedError as exc:
        console.print(fit(_gate_table(exc.result)))
        raise fail(exc) from exc
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    if as_json:
        console.print_json(json.dumps(result.record.__dict__, default=str))
        return
    console.print(fit(_gate_table(result)))
    for graph in result.graphs:
        if graph.cpu is not None:
            console.print(
                f"{graph.graph}: CPU INT8 form {'kept' if graph.cpu.kept else 'not kept'} "
                f"({graph.cpu.reason}; FP32 {graph.cpu.fp32_ms:.2f} ms, "
                f"INT8 {graph.cpu.int8_ms:.2f} ms)"
            )
    state = "[yellow]forced[/]" if result.record.forced else "[green]passed[/]"
    console.print(f"INT8 artifacts written to {bundle} ({state})")


def build(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (engines are added to it).")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp16",
    dla: Annotated[int | None, typer.Option(help="Jetson DLA core (0/1).")] = None,
    graph: Annotated[list[str] | None, typer.Option(help="Only these graphs.")] = None,
    legacy_calibrator: Annotated[
        bool, typer.Option(help="TensorRT 8.x: implicit INT8 calibration (JetPack 5).")
    ] = False,
    if_missing: Annotated[
        bool, typer.Option(help="Skip graphs that already have an engine for this device.")
    ] = False,
) -> None:
    """Build TensorRT engines for this device from the bundle's ONNX (needs TensorRT)."""
    from edge_sdk.device import DeviceProbe
    from export.tensorrt_build import build_bundle_engines

    try:
        device = DeviceProbe().probe()
        built = build_bundle_engines(
            bundle,
            device,
            precision,
            dla_core=dla,
            graphs=tuple(graph) if graph else None,
            legacy_calibrator=legacy_calibrator,
            if_missing=if_missing,
        )
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    engines = [a.path for a in built.manifest.artifacts if a.format == "tensorrt"]
    console.print(f"engines for {device.fingerprint}: {', '.join(engines)}")


def export_triton(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (read, not changed).")],
    out: Annotated[Path, typer.Option(help="Model repository folder to write.")],
    target: Annotated[
        str | None,
        typer.Option(help="Serve the bundle's TensorRT engines for this fingerprint "
                     "(e.g. sm_87-trt10.3, as `edge-sdk devices` prints)."),
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32, fp16 or int8 (default: FP32 ONNX).")
    ] = None,
    instance_kind: Annotated[str, typer.Option(help="gpu or cpu for the graph models.")] = "gpu",
    instances: Annotated[int, typer.Option(help="Instances of each model.")] = 1,
    max_queue_delay_us: Annotated[
        int, typer.Option(help="Dynamic batching's wait for more requests (us).")
    ] = 100,
    pipeline: Annotated[
        bool, typer.Option(help="Also write the image-in, emotions-out Python model.")
    ] = True,
    detector: Annotated[
        Path | None,
        typer.Option(help="Face-detector bundle for families without one (default: built-in)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export at --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Write a Triton Inference Server model repository for a bundle."""
    from edge_sdk.triton.repository import export_triton_repository

    try:
        repository = export_triton_repository(
            bundle,
            out,
            target=target,
            precision=precision,
            instance_kind=instance_kind,
            instances=instances,
            max_queue_delay_us=max_queue_delay_us,
            pipeline=pipeline,
            detector=detector,
            overwrite=overwrite,
        )
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    if as_json:
        console.print_json(json.dumps(repository.to_dict()))
        return
    table = Table(title=f"Triton model repository {out}")
    for column in ("model", "platform", "max batch", "served from"):
        table.add_column(column)
    for model in repository.models:
        table.add_row(
            model.name, model.platform, str(model.max_batch_size), f"{model.source} ({model.note})"
        )
    console.print(fit(table))
    for note in repository.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    checked = "parsed with Triton's model-config schema" if repository.schema_checked else (
        "checked against the ONNX models only (pip install 'tritonclient[grpc]' to parse them)"
    )
    console.print(f"every config.pbtxt {checked}", highlight=False, soft_wrap=True)


def doctor(
    bundle: Annotated[Path | None, typer.Option(help="Also check this bundle.")] = None,
    digest: Annotated[
        str | None, typer.Option(help="With --bundle: require this digest (sha256:...).")
    ] = None,
) -> None:
    """Health check: the device probe, the backends, and (optionally) a bundle's hashes.

    With ``--bundle`` it prints the bundle's digest on a line of its own (``digest:
    sha256:...``), the value that ``--digest`` and ``edge_sdk.load(..., digest=...)`` pin.
    Exit code 0 when every check passes; the Jetson image runs it as its HEALTHCHECK.
    """
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from runtimes.base import all_backends

    problems: list[str] = []
    device = DeviceProbe().probe()
    table = Table(title=f"edge-sdk doctor ({device.fingerprint})")
    table.add_column("check")
    table.add_column("result")
    for backend in all_backends():
        version = backend.version()
        state = "ok" if backend.is_available() else "absent"
        table.add_row(f"backend {backend.name}", f"{state} ({version})" if version else state)
    if not any(b.is_available() for b in all_backends() if b.automatic):
        problems.append("no deployment backend is importable (install onnxruntime)")
    opened = None
    if bundle is not None:
        try:
            opened = ModelBundle.load(bundle, digest=digest)
            table.add_row("bundle", f"{opened.manifest.family}: every hash verified")
        except EdgeSDKError as exc:
            problems.append(f"bundle: {exc}")
    elif digest is not None:
        problems.append("--digest needs --bundle")
    for problem in problems:
        table.add_row("[red]problem[/]", problem)
    console.print(fit(table))
    if opened is not None:
        console.print(f"digest: {opened.digest}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(code=1)
