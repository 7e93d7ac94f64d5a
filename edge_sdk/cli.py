"""The ``edge-sdk`` command line: predict, devices, export.

Errors the SDK raises on purpose (any EdgeSDKError) and OS errors (a path that cannot be
read or written, a full disk) are printed as one red line and exit with code 2, from every
command (:class:`_OneLineErrors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.reports.tables import fit, ranking_table


class _OneLineErrors(TyperGroup):
    """The command group: an EdgeSDKError or OSError escaping any command (also one with no
    handler of its own, or a subcommand of ``check``) becomes one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EdgeSDKError, OSError) as exc:
            raise _fail(exc) from exc


app = typer.Typer(
    cls=_OneLineErrors,
    help="Ship emotion-recognition models to robots and kiosks.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def _fail(exc: EdgeSDKError | OSError) -> typer.Exit:
    # escaped: messages such as "pip install 'edge-sdk[torch]'" are not rich markup
    errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _export_default_once(quiet: bool = False) -> None:
    """Export the built-in bundle into the cache if it is not there yet (5-10 s, once),
    with progress on stderr: a bar on a terminal, else one line per stage unless ``quiet``
    (``--json``). A cached bundle costs nothing here; ``load`` opens it."""
    from edge_sdk.defaults import DEFAULT_FAMILY, default_bundle, default_bundle_dir
    from edge_sdk.reports.progress import progress_steps

    if default_bundle_dir().is_dir():
        return
    title = f"first use, exporting the built-in {DEFAULT_FAMILY} bundle"
    with progress_steps(title, errors, lines=not quiet) as on_step:
        default_bundle(on_step=on_step)


def _default_bundle(quiet: bool = False) -> Any:
    """The built-in bundle, exported on first use with progress (:func:`_export_default_once`)."""
    from edge_sdk.defaults import default_bundle

    _export_default_once(quiet)
    return default_bundle()


def _check_writable(path: Path, option: str, *, directory: bool) -> None:
    """Refuse an output path that cannot be written (an existing file where a folder is
    wanted, a folder where a file is, a parent that is a file or read-only) before any
    work: an export or a training run would otherwise fail only at its end."""
    if path.exists() and path.is_dir() != directory:
        kind = "is a directory" if path.is_dir() else "exists and is not a directory"
        raise InputError(f"{option} {path}: {kind}")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {existing} is not writable")


def _annotation_path(target: Path, image: Path, many: bool) -> Path:
    return target / f"{image.stem}.annotated.png" if many else target


def _parse_box(text: str) -> list[float]:
    """``"x1,y1,x2,y2"`` -> four floats (InputError otherwise)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InputError(f"--head-box {text!r}: expected x1,y1,x2,y2 numbers") from exc
    if len(values) != 4:
        raise InputError(f"--head-box {text!r}: expected four numbers x1,y1,x2,y2")
    return values


def _drawable(prediction: Any) -> Any:
    """A FacePrediction whose faces all have a label to draw (valence/arousal-only faces get
    ``v=.. a=..`` as their label)."""
    import dataclasses

    faces = []
    for face in prediction.faces:
        if face.label is None:
            text = f"v={face.valence:+.2f} a={face.arousal:+.2f}"
            face = dataclasses.replace(face, label=text, probabilities={text: 1.0})
        faces.append(face)
    return dataclasses.replace(prediction, faces=tuple(faces))


def _print_faces(path: Path, prediction: Any) -> None:
    """The face table of one image (or the no-face line)."""
    total = prediction.timings_ms["total"]
    if not prediction.faces:
        console.print(f"{path}: no face found ({total:.1f} ms)", soft_wrap=True)
        return
    table = Table(title=f"{path} ({total:.1f} ms)")
    extra_va = any(f.valence is not None for f in prediction.faces)
    extra_zs = any(f.zero_shot is not None for f in prediction.faces)
    columns = ["#", "label", "p", "box (x1, y1, x2, y2)", "face score"]
    columns += ["valence", "arousal"] if extra_va else []
    columns += ["zero-shot", "p (zs)"] if extra_zs else []
    for column in columns:
        table.add_column(column)
    for i, face in enumerate(prediction.faces):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        p = f"{face.probabilities[face.label]:.3f}" if face.label is not None else "-"
        row = [str(i), face.label or "-", p, box, f"{face.detection_score:.4f}"]
        if extra_va:
            row += [f"{face.valence:+.3f}", f"{face.arousal:+.3f}"]
        if extra_zs:
            zs = face.zero_shot
            row += [zs.label, f"{zs.probabilities[zs.label]:.3f}"]
        table.add_row(*row)
    console.print(fit(table))


def _print_prediction(prediction: Any, scene_path: Path | None) -> None:
    """Tables for the scene, audio, video and dialog parts of a Prediction."""
    if prediction.scene is not None:
        scene = prediction.scene
        title = f"scene {scene_path} ({scene.timings_ms['total']:.1f} ms, workspace "
        table = Table(title=f"{title}{scene.workspace})")
        for column in ("#", "label", "p", "removed", "kept", "head box", "body box (source)"):
            table.add_column(column)
        for i, person in enumerate(scene.people):
            table.add_row(
                str(i),
                ", ".join(person.labels) or person.label,
                f"{person.probabilities[person.label]:.3f}",
                " > ".join(person.removed) or "-",
                person.kept or "-",
                ", ".join(f"{v:.0f}" for v in person.head_box),
                ", ".join(f"{v:.0f}" for v in person.body_box) + f" ({person.body_source})",
            )
        if scene.people:
            console.print(fit(table))
        else:
            console.print(f"scene {scene_path}: no person found", soft_wrap=True)
    if prediction.audio is not None:
        audio = prediction.audio
        how = audio.graph + (f" ({audio.fallback})" if audio.fallback else "")
        console.print(
            f"audio: {audio.label} p={audio.probabilities[audio.label]:.3f} via {how}, "
            f"{audio.audio_seconds:.2f} s, {audio.frames_used}/{audio.video_frames} frames used "
            f"({audio.timings_ms['total']:.1f} ms)",
            soft_wrap=True,
        )
    if prediction.video is not None:
        video = prediction.video
        with_face = sum(1 for f in video.frames if f.faces)
        console.print(
            f"video: {len(video.frames)} frames, {with_face} with a face, "
            f"{video.fps:.1f} frames/s",
            soft_wrap=True,
        )
    if prediction.dialog is not None:
        dialog = prediction.dialog
        table = Table(title=f"dialog ({dialog.timings_ms['total']:.1f} ms)")
        for column in ("#", "speaker", "text", "label", "p", "modalities"):
            table.add_column(column)
        for u in dialog.utterances:
            table.add_row(
                str(u.index),
                u.speaker or "-",
                (u.text or "")[:40],
                u.label,
                f"{u.probabilities[u.label]:.3f}",
                "+".join(u.modalities),
            )
        console.print(fit(table))


def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> Any:
    """An OpenCV writer for ``--annotate`` of a stream (.avi: MJPG, .mp4: mp4v)."""
    import cv2

    codecs = {".avi": "MJPG", ".mp4": "mp4v"}
    if path.suffix.lower() not in codecs:
        raise InputError(f"--annotate {path}: a video needs a .avi or .mp4 name")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*codecs[path.suffix.lower()]), fps, size
    )
    if not writer.isOpened():
        raise InputError(f"cannot write video {path}")
    return writer


def _stream(
    recognizer: Any,
    source: Path | int,
    annotate: Path | None,
    max_frames: int | None,
    read_timeout: float,
) -> None:
    """Per-frame face results as JSON lines, then a summary line with the FPS."""
    import time

    import cv2

    from edge_sdk.annotate import draw_faces
    from edge_sdk.preprocess.video import FrameStream

    writer = None
    count = 0
    start = time.perf_counter()
    with FrameStream(source, read_timeout=read_timeout) as stream:
        try:
            for frame in stream:
                result = recognizer.predict(frame.bgr, color="bgr")
                count += 1
                elapsed = time.perf_counter() - start
                line = {k: v for k, v in result.to_dict().items() if k != "backends"}
                typer.echo(
                    json.dumps(
                        {"frame": frame.index, "seconds": round(frame.seconds, 4), **line,
                         "fps": count / elapsed}
                    )
                )
                if annotate is not None:
                    if writer is None:
                        height, width = frame.bgr.shape[:2]
                        writer = _video_writer(annotate, stream.fps or 25.0, (width, height))
                    rgb = cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB)
                    writer.write(draw_faces(rgb, _drawable(result)))
                if max_frames is not None and count >= max_frames:
                    break
        finally:
            if writer is not None:
                writer.release()
    elapsed = time.perf_counter() - start
    summary = {
        "summary": True,
        "source": str(source),
        "frames": count,
        "seconds": elapsed,
        "fps": count / elapsed if elapsed > 0 else 0.0,
        "backends": recognizer.backends,
        "annotated": str(annotate) if annotate is not None and count else None,
    }
    typer.echo(json.dumps(summary))


@app.command()
def predict(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files (JPEG, PNG, ...) for the faces.")
    ] = None,
    bundle: Annotated[
        list[Path] | None,
        typer.Option(help="Bundle directory; repeat for several. Default: built-in face-fer7."),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Force a backend, e.g. ort-cpu.")] = None,
    precision: Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write boxes and labels: a file for one image, a folder for several, "
            "a .avi/.mp4 file when streaming --video/--camera."
        ),
    ] = None,
    scene: Annotated[
        Path | None, typer.Option(help="Image for the scene family (CocoER).")
    ] = None,
    head_box: Annotated[
        list[str] | None,
        typer.Option(help="Head box x1,y1,x2,y2 for --scene; repeat per person. Default: faces."),
    ] = None,
    audio: Annotated[
        Path | None, typer.Option(help="WAV file for the audio(-video) family.")
    ] = None,
    video: Annotated[
        Path | None,
        typer.Option(help="Video file: with --audio one clip result, alone a JSONL stream."),
    ] = None,
    camera: Annotated[
        int | None, typer.Option(help="Stream camera N (cv2.VideoCapture index) as JSONL.")
    ] = None,
    dialog: Annotated[
        Path | None,
        typer.Option(help="Dialog as JSONL: text, audio, frames/video, speaker per line."),
    ] = None,
    allow_outside_media: Annotated[
        bool,
        typer.Option(help="Let --dialog name media files outside the JSONL's folder."),
    ] = False,
    max_frames: Annotated[
        int | None, typer.Option(min=1, help="Stop a stream after this many frames.")
    ] = None,
    read_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for a stream's next frame.")
    ] = 5.0,
    min_face: Annotated[
        int | None,
        typer.Option(help="Smallest face side in pixels (default 20); larger is faster."),
    ] = None,
    allow_untrained: Annotated[
        bool, typer.Option(help="Run bundles exported --untrained (random weights; latency).")
    ] = False,
    digest: Annotated[
        list[str] | None,
        typer.Option(
            help="Refuse any bundle but this one (sha256:..., as `doctor` prints); "
            "one per --bundle, in order."
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="Predict on an `edge-sdk serve` server (http://host:8000, grpc://host:8001) "
            "instead of loading bundles here."
        ),
    ] = None,
) -> None:
    """Predict emotions: faces in images, a scene, audio(+video), a dialog, or a stream."""
    from edge_sdk.api import load
    from edge_sdk.preprocess.image import read_image

    images = images or []
    streaming = camera is not None or (video is not None and audio is None)
    others = scene is not None or audio is not None or dialog is not None
    try:
        if camera is not None and camera < 0:  # OpenCV segfaults on some negative indices
            raise InputError(f"--camera {camera}: a camera index is an integer >= 0")
        if streaming and (images or others or (camera is not None and video is not None)):
            raise InputError(
                "streaming (--camera, or --video without --audio) takes no other input"
            )
        if head_box and scene is None:
            raise InputError("--head-box needs --scene")
        if not (images or others or streaming):
            raise InputError("nothing to predict: give images, --scene, --audio, --video, "
                             "--camera or --dialog")
        if annotate is not None and images:  # a bad name fails before any work
            from edge_sdk.annotate import check_image_path

            check_image_path(_annotation_path(annotate, images[0], len(images) > 1))
        if server is not None:
            recognizer = _connect(server, bundle=bundle, backend=backend, precision=precision,
                                  min_face=min_face, digest=digest,
                                  allow_untrained=allow_untrained)  # fmt: skip
        else:
            if not bundle:
                _export_default_once(quiet=as_json)
            recognizer = load(
                bundle or None,
                backend=backend,
                precision=precision,
                min_face=min_face,
                digest=digest or None,
                allow_untrained=allow_untrained,
            )
        if streaming:
            _stream(recognizer, camera if camera is not None else video, annotate,
                    max_frames, read_timeout)
            return
        results = []
        annotated: dict[int, str] = {}  # result index -> where its annotated image went
        for image in images:
            # The path, not decoded pixels: predict times the decode (--json's "decode").
            prediction = recognizer.predict(image)
            results.append((image, prediction))
            if annotate is not None:
                from edge_sdk.annotate import write_annotated

                target = _annotation_path(annotate, image, len(images) > 1)
                write_annotated(target, read_image(image), _drawable(prediction))
                annotated[len(results) - 1] = str(target)
        combined = None
        if others:
            from edge_sdk.pipelines.dialog import read_dialog_jsonl

            combined = recognizer.predict(
                scene=None
                if scene is None
                else {
                    "image": read_image(scene),
                    "head_boxes": [_parse_box(b) for b in head_box] if head_box else None,
                },
                audio=audio,
                video=video,
                dialog=None
                if dialog is None
                else read_dialog_jsonl(dialog, allow_outside=allow_outside_media),
            )
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    if as_json:
        payload: Any = [{"image": str(path), **p.to_dict()} for path, p in results]
        for i, target in annotated.items():
            payload[i]["annotated"] = target
        if combined is None:
            console.print_json(json.dumps(payload if len(payload) > 1 else payload[0]))
            return
        extra = combined.to_dict()
        if scene is not None:
            extra["scene"] = {"image": str(scene), **extra["scene"]}
        console.print_json(json.dumps({**({"images": payload} if payload else {}), **extra}))
        return
    for i, (path, prediction) in enumerate(results):
        _print_faces(path, prediction)
        if i in annotated:
            console.print(f"annotated image written to {annotated[i]}", soft_wrap=True)
    if combined is not None:
        _print_prediction(combined, scene)


def _connect(server: str, **local_only: Any) -> Any:
    """The server's recognizer; options that pick bundles or backends here are refused
    (the server chose them at ``edge-sdk serve``)."""
    from edge_sdk.serving.client import connect

    given = sorted("--" + k.replace("_", "-") for k, v in local_only.items() if v)
    if given:
        raise InputError(
            f"{', '.join(given)} choose what runs in this process; with --server the server "
            "decided at `edge-sdk serve`"
        )
    return connect(server)


@app.command()
def devices(
    bundle: Annotated[
        Path | None, typer.Option(help="Rank backends for this bundle; default: built-in.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this device and, per graph, the ranked backends with the reason for each."""
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from runtimes.selection import rank_candidates

    try:
        info = DeviceProbe().probe()
        opened = ModelBundle.load(bundle) if bundle else _default_bundle(quiet=as_json)
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
    console.print(fit(device_table))
    console.print(fit(ranking_table(manifest.family, ranking)))


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
    untrained: Annotated[
        bool,
        typer.Option(help="No checkpoint: export random weights (sizes/latency; marked so)."),
    ] = False,
) -> None:
    """Export a family to an ONNX bundle (checked against PyTorch before it is written)."""
    from edge_sdk.reports.progress import progress_steps

    _check_writable(out, "--out", directory=True)
    try:
        from export.family_export import export_family
    except ImportError as exc:
        raise _fail(
            InputError(f"export needs torch: pip install 'edge-sdk[torch]' ({exc})")
        ) from exc
    try:
        with progress_steps(f"export {family}", errors, lines=True) as on_step:
            bundle = export_family(
                family, out, checkpoint, config, on_step=on_step, untrained=untrained
            )
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"{family} -> {bundle.root}")
    for column in ("graph", "artifacts", "max |torch - ORT|"):
        table.add_column(column)
    for graph in bundle.manifest.graphs:
        files = ", ".join(a.path for a in bundle.manifest.artifacts_for(graph.name))
        diff = bundle.manifest.parity.get(f"{graph.name}.onnx_fp32_max_abs", float("nan"))
        table.add_row(graph.name, files, f"{diff:.2e}")
    console.print(fit(table))


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
    from edge_sdk.reports.progress import progress_steps

    _check_writable(out, "--out", directory=False)
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
        with progress_steps(f"train {family}", errors, lines=True) as report:
            model, losses = run_training(
                spec,
                resolved,
                generated,
                epochs=epochs,
                lr=lr,
                seed=seed,
                # one stage per epoch: off a terminal, one line per epoch
                on_step=lambda step, loss: report(
                    step, epochs * batches, f"epoch {(step - 1) // batches + 1}/{epochs}"
                ),
            )
        path = save_checkpoint(out, family, model, resolved)
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    first, last = sum(losses[:batches]) / batches, sum(losses[-batches:]) / batches
    console.print(
        f"{family}: loss {first:.4f} (epoch 1) -> {last:.4f} (epoch {epochs}); checkpoint {path}",
        soft_wrap=True,
    )


@app.command()
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
        raise _fail(exc) from exc


@app.command()
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
    backend: Annotated[str | None, typer.Option(help="Force a backend, e.g. ort-cpu.")] = None,
    precision: Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")] = None,
    min_face: Annotated[
        int | None,
        typer.Option(help="Smallest face side in pixels (default 20); larger is faster."),
    ] = None,
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
        _export_default_once()
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


check_app = typer.Typer(
    help="Checks of a bundle: parity across backends, latency (and accuracy).",
    no_args_is_help=True,
)
app.add_typer(check_app, name="check")


def _names(text: str | None) -> list[str] | None:
    """Comma-separated option values, or None when not given."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    return names or None


def _open_bundle(bundle: Path | None, quiet: bool = False, digest: str | None = None) -> Any:
    """The given or the default bundle; with ``digest``, any other bundle is refused."""
    from edge_sdk.bundle import ModelBundle

    if bundle:
        return ModelBundle.load(bundle, digest=digest)
    opened = _default_bundle(quiet)
    if digest is not None:
        opened.check_digest(digest)
    return opened


def verify(
    bundle: Annotated[
        Path | None, typer.Argument(help="Bundle directory; default: built-in face-fer7.")
    ] = None,
    backends: Annotated[
        str | None, typer.Option(help="Only these backends, comma-separated (e.g. ort-cpu).")
    ] = None,
    precisions: Annotated[
        str | None, typer.Option(help="Only these precisions, comma-separated (fp32,int8).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="FILE.npz (GRAPH/INPUT arrays), an image folder/list, or synthetic."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Samples to draw from --data.")] = None,
    sizes: Annotated[
        str, typer.Option(help="Profile points for generated inputs (opt,min,max).")
    ] = "opt,min,max",
    seed: Annotated[int, typer.Option(help="Seed of generated inputs.")] = 0,
    max_elements: Annotated[
        int, typer.Option(min=1, help="Largest generated input, in values (sizes shrink).")
    ] = 1 << 22,
    graphs: Annotated[str | None, typer.Option(help="Only these graphs, comma-separated.")] = None,
    atol: Annotated[float | None, typer.Option(min=0.0, help="Override atol (fp32/fp16).")] = None,
    rtol: Annotated[float | None, typer.Option(min=0.0, help="Override rtol (fp32/fp16).")] = None,
    min_agreement: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Override least top-1 agreement.")
    ] = None,
    max_prob_diff: Annotated[
        float | None, typer.Option(min=0.0, help="Override largest probability difference.")
    ] = None,
    max_metric_drop: Annotated[
        float | None, typer.Option(min=0.0, help="Override largest accuracy drop (labels).")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Judge INT8 agreement on generated inputs too.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write verify.json, PNG plots and index.html here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    digest: Annotated[
        str | None,
        typer.Option(help="Refuse any bundle but this one (sha256:..., as `doctor` prints)."),
    ] = None,
) -> None:
    """Run the same inputs through every backend and precision; exit 1 if any output differs."""
    from edge_sdk.checks.feeds import load_feeds
    from edge_sdk.checks.verify import ToleranceOverrides
    from edge_sdk.checks.verify import verify as run_verify
    from edge_sdk.device import DeviceProbe
    from edge_sdk.reports.jsonio import dumps
    from edge_sdk.reports.progress import progress_steps
    from edge_sdk.reports.tables import verify_tables

    try:
        if report is not None:
            from edge_sdk.reports.plots import require_matplotlib

            require_matplotlib()
        info = DeviceProbe().probe()
        opened = _open_bundle(bundle, quiet=as_json, digest=digest)
        feeds = load_feeds(data, opened, info, count, seed) if data else None
        overrides = ToleranceOverrides(atol, rtol, min_agreement, max_prob_diff, max_metric_drop)
        with progress_steps("verify", errors, enabled=errors.is_terminal) as on_step:
            result = run_verify(
                opened,
                info,
                backends=_names(backends),
                precisions=_names(precisions),
                data=feeds,
                sizes=tuple(_names(sizes) or ()),
                seed=seed,
                max_elements=max_elements,
                overrides=overrides,
                graphs=_names(graphs),
                strict=strict,
                on_step=on_step,
            )
        if report is not None:
            from edge_sdk.reports.writers import write_verify_report

            page = write_verify_report(result, report)
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.out(dumps(result.to_dict()), end="")
    else:
        for table in verify_tables(result):
            console.print(fit(table))
        if report is not None:
            console.print(f"report: {page}", soft_wrap=True)
    if not result.passed:
        for line in result.failures():
            errors.print(f"[bold red]FAIL[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def bench(
    bundle: Annotated[
        Path | None, typer.Argument(help="Bundle directory; default: built-in face-fer7.")
    ] = None,
    backends: Annotated[
        str | None, typer.Option(help="Backends side by side, comma-separated; default: auto.")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 3,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per measurement.")] = 20,
    batches: Annotated[str, typer.Option(help="Batch sizes for throughput.")] = "1,2,4,8,16,32",
    sweep: Annotated[bool, typer.Option(help="Time each dynamic dim over its range.")] = True,
    sweep_points: Annotated[int, typer.Option(min=2, help="Values per swept dim.")] = 5,
    image: Annotated[
        list[Path] | None, typer.Option(help="Images for the pipeline stages (repeatable).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=0, help="ONNX Runtime intra-op threads (0 = default).")
    ] = None,
    max_elements: Annotated[
        int, typer.Option(min=1, help="Skip sizes whose largest input exceeds this.")
    ] = 1 << 22,
    graphs: Annotated[str | None, typer.Option(help="Only these graphs, comma-separated.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write bench.json, PNG plots and index.html here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    digest: Annotated[
        str | None,
        typer.Option(help="Refuse any bundle but this one (sha256:..., as `doctor` prints)."),
    ] = None,
) -> None:
    """Latency per graph and pipeline stage: p50/p90/p99, throughput, cost vs size, RSS."""
    import os

    from edge_sdk.checks.bench import bench as run_bench
    from edge_sdk.device import DeviceProbe
    from edge_sdk.reports.jsonio import dumps
    from edge_sdk.reports.progress import progress_steps
    from edge_sdk.reports.tables import bench_tables

    try:
        sizes = [int(b) for b in _names(batches) or []]
    except ValueError as exc:
        raise _fail(InputError(f"--batches takes integers, got {batches!r}")) from exc
    if threads is not None:
        os.environ["EDGE_SDK_THREADS"] = str(threads)  # read when each session is opened
    try:
        if report is not None:
            from edge_sdk.reports.plots import require_matplotlib

            require_matplotlib()
        info = DeviceProbe().probe()
        opened = _open_bundle(bundle, quiet=as_json, digest=digest)
        chosen: list[str | None] = list(_names(backends) or [None])
        with progress_steps("bench", errors, enabled=errors.is_terminal) as on_step:
            result = run_bench(
                opened,
                info,
                backends=chosen,
                precision=precision,
                warmup=warmup,
                runs=runs,
                batches=sizes,
                sweep=sweep,
                sweep_points=sweep_points,
                images=image or (),
                max_elements=max_elements,
                graphs=_names(graphs),
                on_step=on_step,
            )
        if report is not None:
            from edge_sdk.reports.writers import write_bench_report

            page = write_bench_report(result, report)
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.out(dumps(result.to_dict()), end="")
        return
    for table in bench_tables(result):
        console.print(fit(table))
    if report is not None:
        console.print(f"report: {page}", soft_wrap=True)


def accuracy(
    bundles: Annotated[
        list[Path] | None,
        typer.Argument(help="Bundle directories (several: one Recognizer); default: face-fer7."),
    ] = None,
    dataset: Annotated[
        Path, typer.Option(help="Annotation file or data set folder, as --format reads it.")
    ] = ...,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="fer2013, rafdb, affectnet, caer-s, emotic, meld, iemocap, afew, folder, jsonl.",
        ),
    ] = ...,
    split: Annotated[str | None, typer.Option(help="A published split, e.g. PrivateTest.")] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Where the media live, if not in the published place.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score a seeded random subset of N samples.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit subset.")] = 0,
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            help="DATASET_LABEL=BUNDLE_LABEL (or DATASET_LABEL= to leave it out); repeatable."
        ),
    ] = None,
    unmapped: Annotated[
        str, typer.Option(help="Data set labels the bundle lacks: error or skip.")
    ] = "error",
    missing_files: Annotated[
        str, typer.Option(help="Missing media: error, skip, or keep (score without it).")
    ] = "error",
    task: Annotated[
        str, typer.Option(help="auto, classification or valence-arousal.")
    ] = "auto",
    faces: Annotated[
        str, typer.Option(help="detect (as deployed) or given (sample box / whole image).")
    ] = "detect",
    backend: Annotated[str | None, typer.Option(help="Force a backend, e.g. ort-cpu.")] = None,
    precision: Annotated[str | None, typer.Option(help="Require fp32, fp16 or int8.")] = None,
    min_war: Annotated[float | None, typer.Option(help="Least WAR (accuracy).")] = None,
    min_uar: Annotated[float | None, typer.Option(help="Least UAR (balanced accuracy).")] = None,
    min_f1: Annotated[float | None, typer.Option(help="Least macro F1.")] = None,
    min_map: Annotated[float | None, typer.Option(help="Least mAP (multi-label).")] = None,
    max_rmse: Annotated[
        float | None, typer.Option(help="Largest RMSE of valence and of arousal.")
    ] = None,
    min_ccc: Annotated[
        float | None, typer.Option(help="Least CCC of valence and of arousal.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write accuracy.json, confusion.png and index.html here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    server: Annotated[
        str | None,
        typer.Option(help="Score on an `edge-sdk serve` server (http://host:8000) instead."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Predictions in flight at a time (with --server).")
    ] = 1,
) -> None:
    """Score a labelled data set (published layouts): WAR/UAR, F1, mAP, RMSE/PCC/CCC."""
    from edge_sdk.checks.accuracy import (
        check_accuracy,
        dataset_labels_for,
        default_title,
        open_recognizer,
        parse_label_map,
        summary_rows,
    )
    from edge_sdk.datasets import read_dataset
    from edge_sdk.reports.jsonio import dumps, write_json
    from edge_sdk.reports.progress import progress_steps
    from edge_sdk.reports.writers import accuracy_tables

    thresholds = {
        "min_war": min_war,
        "min_uar": min_uar,
        "min_macro_f1": min_f1,
        "min_map": min_map,
        "max_rmse": max_rmse,
        "min_ccc": min_ccc,
    }
    try:
        if report is not None:
            from edge_sdk.reports.plots import require_matplotlib

            require_matplotlib()
        mapping = parse_label_map(label_map)
        if server is not None:
            recognizer = _connect(server, bundles=bundles, backend=backend, precision=precision)
        else:
            if not bundles:
                _export_default_once(quiet=as_json)
            recognizer, _ = open_recognizer(bundles or None, backend=backend, precision=precision)
        with recognizer:
            data = read_dataset(
                dataset,
                fmt,
                dataset_labels_for(recognizer, fmt, task),
                split=split,
                media_root=media_root,
                missing_files=missing_files,
            )
            with progress_steps("accuracy", errors, enabled=errors.is_terminal) as on_step:
                result = check_accuracy(
                    recognizer,
                    data,
                    limit=limit,
                    seed=seed,
                    on_step=on_step,
                    label_map=mapping,
                    unmapped=unmapped,
                    faces=faces,
                    thresholds=thresholds,
                    concurrency=concurrency,
                )
        title = default_title(result)
        if report is not None:
            from edge_sdk.reports.writers import write_accuracy_report

            page = write_accuracy_report(
                result.metrics,
                report,
                title=title,
                context=dict(summary_rows(result)),
                passed=result.passed if result.thresholds else None,
            )
            write_json(report / "accuracy.json", result.to_dict())  # the same as --json
    except EdgeSDKError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.out(dumps(result.to_dict()), end="")
    else:
        summary = Table(title=title, show_header=False)
        for name, value in summary_rows(result):
            summary.add_row(name, escape(value))
        console.print(fit(summary))
        for table in accuracy_tables(result.metrics, title="accuracy"):
            console.print(fit(table))
        if report is not None:
            console.print(f"report: {page}", soft_wrap=True)
    if not result.passed:
        for line in result.failures:
            errors.print(f"[bold red]FAIL[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


app.command("verify")(verify)
app.command("bench")(bench)
check_app.command("parity", help="Same as `edge-sdk verify`.")(verify)
check_app.command("latency", help="Same as `edge-sdk bench`.")(bench)
check_app.command("accuracy")(accuracy)


def main() -> None:
    """Console-script entry point."""
    app()


# Deployment commands (calibrate, build, doctor) live in their own module and register
# themselves on ``app``; imported last because they import ``app`` from here.
from edge_sdk import deploy_cli  # noqa: E402, F401
