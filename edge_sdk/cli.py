"""The ``edge-sdk`` command line: predict, devices, export.

Errors the SDK raises on purpose are printed as one red line and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edge_sdk.errors import EdgeSDKError, InputError

app = typer.Typer(
    help="Ship emotion-recognition models to robots and kiosks.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def _fail(exc: EdgeSDKError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _annotation_path(target: Path, image: Path, many: bool) -> Path:
    return target / f"{image.stem}.annotated.png" if many else target


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, ...).")],
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle directory; default: built-in face-fer7.")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Force a backend, e.g. ort-cpu.")] = None,
    precision: Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    annotate: Annotated[
        Path | None,
        typer.Option(help="Write boxes and labels: a file for one image, a folder for several."),
    ] = None,
) -> None:
    """Detect faces and classify their expressions."""
    from edge_sdk.api import load
    from edge_sdk.preprocess.image import read_image

    try:
        recognizer = load(bundle, backend=backend, precision=precision)
        results = []
        for image in images:
            pixels = read_image(image)
            prediction = recognizer.predict(pixels)
            results.append((image, prediction))
            if annotate is not None:
                from edge_sdk.annotate import write_annotated

                write_annotated(
                    _annotation_path(annotate, image, len(images) > 1), pixels, prediction
                )
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    if as_json:
        payload = [{"image": str(path), **p.to_dict()} for path, p in results]
        console.print_json(json.dumps(payload if len(payload) > 1 else payload[0]))
        return
    for path, prediction in results:
        if not prediction.faces:
            total = prediction.timings_ms["total"]
            console.print(f"{path}: no face found ({total:.1f} ms)", soft_wrap=True)
            continue
        table = Table(title=f"{path} ({prediction.timings_ms['total']:.1f} ms)")
        for column in ("#", "label", "p", "box (x1, y1, x2, y2)", "face score"):
            table.add_column(column)
        for i, face in enumerate(prediction.faces):
            box = ", ".join(f"{v:.0f}" for v in face.box)
            table.add_row(
                str(i),
                face.label,
                f"{face.probabilities[face.label]:.3f}",
                box,
                f"{face.detection_score:.4f}",
            )
        console.print(table)


@app.command()
def devices(
    bundle: Annotated[
        Path | None, typer.Option(help="Rank backends for this bundle; default: built-in.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this device and, per graph, the ranked backends with the reason for each."""
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.defaults import default_bundle
    from edge_sdk.device import DeviceProbe
    from runtimes.selection import rank_candidates

    try:
        info = DeviceProbe().probe()
        opened = ModelBundle.load(bundle) if bundle else default_bundle()
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    manifest = opened.manifest
    ranking = {g.name: rank_candidates(manifest, g.name, info) for g in manifest.graphs}
    if as_json:
        payload = {
            "device": info.to_dict(),
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
    device_table.add_row("onnxruntime", f"{info.onnxruntime_version} {list(info.ort_providers)}")
    device_table.add_row("tensorrt", info.tensorrt_version or "not installed")
    device_table.add_row("fingerprint", info.fingerprint)
    console.print(device_table)
    table = Table(title=f"{manifest.family}: backends per graph, in the order tried")
    for column in ("graph", "order", "backend", "precision", "reason"):
        table.add_column(column)
    for graph, candidates in ranking.items():
        for i, c in enumerate(candidates, 1):
            order = str(i) if c.usable else "unusable"
            table.add_row(graph, order, c.backend, c.artifact.precision, c.reason)
    console.print(table)


@app.command()
def export(
    family: Annotated[str, typer.Argument(help="Family name, e.g. face-fer7.")],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Weights to export instead of the defaults.")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Size (tiny, edge) or JSON file, for our own families.")
    ] = None,
) -> None:
    """Export a family to an ONNX bundle (checked against PyTorch before it is written)."""
    try:
        from export.family_export import export_family
    except ImportError as exc:
        raise _fail(
            InputError(f"export needs torch: pip install 'edge-sdk[torch]' ({exc})")
        ) from exc
    try:
        bundle = export_family(family, out, checkpoint, config)
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"{family} -> {bundle.root}")
    for column in ("graph", "artifacts", "max |torch - ORT|"):
        table.add_column(column)
    for graph in bundle.manifest.graphs:
        files = ", ".join(a.path for a in bundle.manifest.artifacts_for(graph.name))
        diff = bundle.manifest.parity.get(f"{graph.name}.onnx_fp32_max_abs", float("nan"))
        table.add_row(graph.name, files, f"{diff:.2e}")
    console.print(table)


@app.command()
def train(
    family: Annotated[str, typer.Argument(help="Family trained with edge-sdk's code.")],
    out: Annotated[Path, typer.Option(help="Checkpoint file to write (.safetensors).")],
    config: Annotated[str, typer.Option(help="Size (tiny, edge) or a JSON file.")] = "tiny",
    data: Annotated[
        str, typer.Option(help="'synthetic' (generated, learnable) - data set adapters follow.")
    ] = "synthetic",
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    batches: Annotated[int, typer.Option(min=1, help="Batches per epoch.")] = 8,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a family on generated data and write a checkpoint that `export` accepts."""
    from rich.progress import Progress

    try:
        from edge_sdk.models.families import get_family
        from edge_sdk.models.training import (
            resolve_config,
            save_checkpoint,
            synthetic_batches,
        )
        from edge_sdk.models.training import train as run_training
    except ImportError as exc:
        raise _fail(
            InputError(f"train needs torch: pip install 'edge-sdk[torch]' ({exc})")
        ) from exc
    try:
        spec = get_family(family)
        if spec.recipe is None:
            raise InputError(f"{family} imports pretrained weights; it is not trained here")
        if data != "synthetic":
            raise InputError(f"unknown data source {data!r}; supported: synthetic")
        resolved = resolve_config(spec.recipe, config)
        generated = synthetic_batches(spec.recipe, resolved, seed, batch_size, batches)
        with Progress(console=errors, transient=True) as progress:
            task = progress.add_task(f"training {family}", total=epochs * batches)
            model, losses = run_training(
                spec,
                resolved,
                generated,
                epochs=epochs,
                lr=lr,
                seed=seed,
                on_step=lambda step, loss: progress.update(task, completed=step),
            )
        path = save_checkpoint(out, family, model, resolved)
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    first, last = sum(losses[:batches]) / batches, sum(losses[-batches:]) / batches
    console.print(
        f"{family}: loss {first:.4f} (epoch 1) -> {last:.4f} (epoch {epochs}); checkpoint {path}",
        soft_wrap=True,
    )


def main() -> None:
    """Console-script entry point."""
    app()
