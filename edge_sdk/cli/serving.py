"""Serving commands: ``serve`` (bundles on NVIDIA Triton through PyTriton) and ``sidecar``
(the CocoER workspace on a Unix socket, so the main process need not import torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli.base import errors, fail
from edge_sdk.cli.common import Backend, MinFace, Precision, export_default_once
from edge_sdk.errors import EdgeSDKError


def sidecar(
    socket_path: Annotated[Path, typer.Option("--socket", help="Unix socket to listen on.")],
    bundle: Annotated[Path | None, typer.Option(help="A scene-cocoer bundle directory.")] = None,
    weights: Annotated[
        Path | None, typer.Option(help="A workspace weights file (Workspace.save).")
    ] = None,
    backend: Annotated[str, typer.Option(help="torch (the reference) or numpy.")] = "torch",
    idle_timeout: Annotated[float, typer.Option(help="Seconds a connection may idle.")] = 300.0,
    io_timeout: Annotated[float, typer.Option(help="Seconds a message may take.")] = 10.0,
    threads: Annotated[int, typer.Option(help="torch threads; 0: torch's default.")] = 1,
) -> None:
    """Serve the CocoER workspace on a Unix socket, so the main process need not import torch."""
    import logging

    from edge_sdk.sidecar import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sidecar %(levelname)s %(message)s")
    try:
        serve(
            socket_path,
            bundle=bundle,
            weights=weights,
            backend=backend,
            idle_timeout=idle_timeout,
            io_timeout=io_timeout,
            threads=threads or None,
        )
    except EdgeSDKError as exc:
        raise fail(exc) from exc


def serve(
    bundles: Annotated[
        list[Path] | None,
        typer.Argument(help="Bundle directories (one Recognizer); default: built-in face-fer7."),
    ] = None,
    http_port: Annotated[int, typer.Option(help="Triton's HTTP/REST port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton's gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    workers: Annotated[
        int, typer.Option(min=1, help="Instances of every model (requests run in parallel).")
    ] = 2,
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most face requests batched together (1: no batching).")
    ] = 16,
    batch_delay_ms: Annotated[
        float, typer.Option(min=0.0, help="How long Triton may hold a face request to batch it.")
    ] = 0.0,
    with_default: Annotated[
        bool, typer.Option(help="Also load the built-in face-fer7 bundle, first.")
    ] = False,
    backend: Backend = None,
    precision: Precision = None,
    min_face: MinFace = None,
    digest: Annotated[
        list[str] | None,
        typer.Option(help="Refuse any bundle but this one (sha256:...); one per BUNDLE."),
    ] = None,
    allow_untrained: Annotated[
        bool, typer.Option(help="Serve bundles exported --untrained (random weights; latency).")
    ] = False,
    triton_log: Annotated[
        Path | None, typer.Option(help="Write Triton's own log here.")
    ] = None,
) -> None:
    """Serve bundles on NVIDIA Triton Inference Server (PyTriton) until SIGINT/SIGTERM."""
    import logging

    from edge_sdk.api import load
    from edge_sdk.serving.server import ServeOptions, check_environment, endpoints, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(levelname)s %(message)s")
    options = ServeOptions(
        http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, address=address,
        workers=workers, max_batch_size=max_batch_size, batch_delay_ms=batch_delay_ms,
        log_file=triton_log,
    )  # fmt: skip
    options.check()
    check_environment()  # before any bundle is opened or exported
    if not bundles:
        export_default_once()
    recognizer = load(
        bundles or None,
        backend=backend,
        precision=precision,
        min_face=min_face,
        digest=digest or None,
        with_default=with_default,
        workers=workers,
        allow_untrained=allow_untrained,
    )

    def ready(server: Any) -> None:
        where = endpoints(options)
        errors.print(
            f"serving {', '.join(server.models)} ({', '.join(recognizer.modalities)}) on "
            f"{where['http']} and {where['grpc']}; health {where['health']}, metrics "
            f"{where['metrics']}; {workers} instance(s) per model, face batches up to "
            f"{max_batch_size}. Stop with Ctrl+C or SIGTERM.",
            highlight=False,
            soft_wrap=True,
        )

    serve_forever(recognizer, options, on_ready=ready)
