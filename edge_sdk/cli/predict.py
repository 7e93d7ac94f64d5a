"""``edge-sdk predict``: faces in images, a scene, audio(+video), a dialog, or a JSONL stream
of a video or camera, from bundles loaded here or from an ``edge-sdk serve`` server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli.base import console, fail
from edge_sdk.cli.common import Backend, MinFace, Precision, connect, export_default_once
from edge_sdk.cli.render import drawable, print_faces, print_prediction
from edge_sdk.cli.stream import StreamOptions, run_stream
from edge_sdk.errors import EdgeSDKError, InputError

Images = Annotated[
    list[Path] | None, typer.Argument(help="Image files (JPEG, PNG, ...) for the faces.")
]
Bundles = Annotated[
    list[Path] | None,
    typer.Option(help="Bundle directory; repeat for several. Default: built-in face-fer7."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Annotate = Annotated[
    Path | None,
    typer.Option(
        help="Write boxes and labels: a file for one image, a folder for several, "
        "a .avi/.mp4 file when streaming --video/--camera."
    ),
]
Scene = Annotated[Path | None, typer.Option(help="Image for the scene family (CocoER).")]
HeadBox = Annotated[
    list[str] | None,
    typer.Option(help="Head box x1,y1,x2,y2 for --scene; repeat per person. Default: faces."),
]
Audio = Annotated[Path | None, typer.Option(help="WAV file for the audio(-video) family.")]
Video = Annotated[
    Path | None,
    typer.Option(help="Video file: with --audio one clip result, alone a JSONL stream."),
]
Camera = Annotated[
    int | None, typer.Option(help="Stream camera N (cv2.VideoCapture index) as JSONL.")
]
Dialog = Annotated[
    Path | None,
    typer.Option(help="Dialog as JSONL: text, audio, frames/video, speaker per line."),
]
AllowOutsideMedia = Annotated[
    bool, typer.Option(help="Let --dialog name media files outside the JSONL's folder.")
]
MaxFrames = Annotated[int | None, typer.Option(min=1, help="Stop a stream after this many frames.")]
DetectEvery = Annotated[
    int,
    typer.Option(min=1, help="Streams: run the face detector on one frame in N and track "
                 "faces in between (1: every frame)."),
]
Smooth = Annotated[
    int,
    typer.Option(min=1, help="Streams: smooth each face's probabilities over about K frames "
                 "(exponential average; 1: off)."),
]
Detector = Annotated[
    str | None,
    typer.Option(help="Face detector: auto, mtcnn, blazeface-short, blazeface-full, "
                 "blazeface-back (default: the bundles' MTCNN; auto for streams)."),
]
ReadTimeout = Annotated[
    float, typer.Option(min=0.1, help="Seconds to wait for a stream's next frame.")
]
AllowUntrained = Annotated[
    bool, typer.Option(help="Run bundles exported --untrained (random weights; latency).")
]
Digests = Annotated[
    list[str] | None,
    typer.Option(
        help="Refuse any bundle but this one (sha256:..., as `doctor` prints); "
        "one per --bundle, in order."
    ),
]
Server = Annotated[
    str | None,
    typer.Option(
        help="Predict on an `edge-sdk serve` server (http://host:8000, grpc://host:8001) "
        "instead of loading bundles here."
    ),
]


def predict(
    images: Images = None,
    bundle: Bundles = None,
    backend: Backend = None,
    precision: Precision = None,
    as_json: AsJson = False,
    annotate: Annotate = None,
    scene: Scene = None,
    head_box: HeadBox = None,
    audio: Audio = None,
    video: Video = None,
    camera: Camera = None,
    dialog: Dialog = None,
    allow_outside_media: AllowOutsideMedia = False,
    max_frames: MaxFrames = None,
    read_timeout: ReadTimeout = 5.0,
    min_face: MinFace = None,
    allow_untrained: AllowUntrained = False,
    digest: Digests = None,
    server: Server = None,
    detector: Detector = None,
    detect_every: DetectEvery = 5,
    smooth: Smooth = 5,
) -> None:
    """Predict emotions: faces in images, a scene, audio(+video), a dialog, or a stream."""
    images = images or []
    streaming = camera is not None or (video is not None and audio is None)
    others = scene is not None or audio is not None or dialog is not None
    try:
        _check_inputs(images, streaming, others, camera, video, head_box, scene, annotate)
        if server is not None:
            recognizer = connect(server, bundle=bundle, backend=backend, precision=precision,
                                 min_face=min_face, digest=digest, detector=detector,
                                 allow_untrained=allow_untrained)  # fmt: skip
        else:
            if streaming and detector is None:
                detector = "auto"  # real time: BlazeFace unless --min-face asks for less
            recognizer = _load(bundle, backend, precision, min_face, digest, allow_untrained,
                               detector, quiet=as_json)  # fmt: skip
        if streaming:
            options = StreamOptions(annotate, max_frames, read_timeout, detect_every, smooth)
            run_stream(recognizer, camera if camera is not None else video, options)
            return
        results, annotated = _predict_images(recognizer, images, annotate)
        combined = None
        if others:
            combined = _predict_others(
                recognizer, scene, head_box, audio, video, dialog, allow_outside_media
            )
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    if as_json:
        _print_json(results, annotated, combined, scene)
        return
    for i, (path, prediction) in enumerate(results):
        print_faces(path, prediction)
        if i in annotated:
            console.print(f"annotated image written to {annotated[i]}", soft_wrap=True)
    if combined is not None:
        print_prediction(combined, scene)


def _check_inputs(
    images: list[Path],
    streaming: bool,
    others: bool,
    camera: int | None,
    video: Path | None,
    head_box: list[str] | None,
    scene: Path | None,
    annotate: Path | None,
) -> None:
    """Refuse combinations of inputs that cannot run together, before any bundle is opened."""
    if camera is not None and camera < 0:  # OpenCV segfaults on some negative indices
        raise InputError(f"--camera {camera}: a camera index is an integer >= 0")
    if streaming and (images or others or (camera is not None and video is not None)):
        raise InputError("streaming (--camera, or --video without --audio) takes no other input")
    if head_box and scene is None:
        raise InputError("--head-box needs --scene")
    if not (images or others or streaming):
        raise InputError("nothing to predict: give images, --scene, --audio, --video, "
                         "--camera or --dialog")  # fmt: skip
    if annotate is not None and images:  # a bad name fails before any work
        from edge_sdk.annotate import check_image_path

        check_image_path(_annotation_path(annotate, images[0], len(images) > 1))


def _load(
    bundle: list[Path] | None,
    backend: str | None,
    precision: str | None,
    min_face: int | None,
    digest: list[str] | None,
    allow_untrained: bool,
    detector: str | None,
    *,
    quiet: bool,
) -> Any:
    """A Recognizer of the given bundles (the built-in one, exported on first use, if none)."""
    from edge_sdk.api import load

    if not bundle:
        export_default_once(quiet=quiet)
    return load(
        bundle or None,
        backend=backend,
        precision=precision,
        min_face=min_face,
        digest=digest or None,
        allow_untrained=allow_untrained,
        detector=detector,
    )


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


def _predict_images(
    recognizer: Any, images: list[Path], annotate: Path | None
) -> tuple[list[tuple[Path, Any]], dict[int, str]]:
    """Each image's faces, and where the annotated copies went (result index -> path)."""
    from edge_sdk.preprocess.image import read_image

    results = []
    annotated: dict[int, str] = {}  # result index -> where its annotated image went
    for image in images:
        # The path, not decoded pixels: predict times the decode (--json's "decode").
        prediction = recognizer.predict(image)
        results.append((image, prediction))
        if annotate is not None:
            from edge_sdk.annotate import write_annotated

            target = _annotation_path(annotate, image, len(images) > 1)
            write_annotated(target, read_image(image), drawable(prediction))
            annotated[len(results) - 1] = str(target)
    return results, annotated


def _predict_others(
    recognizer: Any,
    scene: Path | None,
    head_box: list[str] | None,
    audio: Path | None,
    video: Path | None,
    dialog: Path | None,
    allow_outside_media: bool,
) -> Any:
    """One combined call for the scene, audio(+video) and dialog inputs."""
    from edge_sdk.pipelines.dialog import read_dialog_jsonl
    from edge_sdk.preprocess.image import read_image

    return recognizer.predict(
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


def _print_json(
    results: list[tuple[Path, Any]], annotated: dict[int, str], combined: Any, scene: Path | None
) -> None:
    """``--json``: one object per image (a list for several), merged with the combined call."""
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
