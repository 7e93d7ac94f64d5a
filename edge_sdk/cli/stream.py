"""``edge-sdk predict --video/--camera``: a JSON line per frame, then a summary line.

Locally the face detector runs on one frame in ``--detect-every`` and faces are tracked in
between (stable ``track_id``, per-track smoothing over ``--smooth`` frames,
:mod:`edge_sdk.streams`); a server connection has no detector here, so each frame is sent
whole. ``seconds`` is the frame's time in the file (or its capture time on a camera), and a
live camera drops frames rather than fall behind (``dropped`` counts them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from edge_sdk.errors import InputError


@dataclass(frozen=True)
class StreamOptions:
    """What ``predict`` passes for a stream."""

    annotate: Path | None
    max_frames: int | None
    read_timeout: float
    detect_every: int
    smooth: int


def video_writer(path: Path, fps: float, size: tuple[int, int]) -> Any:
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


def _results(recognizer: Any, frames: Any, options: StreamOptions) -> Any:
    """(frame, JSON-ready dict, something to draw) per frame, and the runner (or None)."""
    from edge_sdk.streams import SmoothingConfig, StreamConfig, StreamRunner

    if getattr(recognizer, "remote", False):
        for frame in frames:
            result = recognizer.predict(frame.bgr, color="bgr")
            line = {k: v for k, v in result.to_dict().items() if k != "backends"}
            yield frame, {"frame": frame.index, "seconds": round(frame.seconds, 4),
                          "clock": frame.clock, "dropped": frame.dropped, **line}, result
        return
    method = "ema" if options.smooth > 1 else "none"
    config = StreamConfig(
        detect_every=options.detect_every,
        smoothing=SmoothingConfig(method, window=max(options.smooth, 1)),
    )
    runner = StreamRunner(recognizer, config)
    for frame in frames:
        result = runner.process(frame)
        yield frame, {**result.to_dict(), "detector_calls": runner.detector_calls}, result


def run_stream(recognizer: Any, source: Path | int, options: StreamOptions) -> None:
    """Per-frame results as JSON lines, then a summary line with the FPS and drops."""
    import cv2

    from edge_sdk.annotate import draw_faces
    from edge_sdk.cli.render import drawable
    from edge_sdk.streams import TimedFrameStream

    writer = None
    count, last = 0, None
    start = time.perf_counter()
    with TimedFrameStream(source, read_timeout=options.read_timeout) as frames:
        try:
            for frame, line, result in _results(recognizer, frames, options):
                count += 1
                last = line
                typer.echo(json.dumps({**line, "fps": count / (time.perf_counter() - start)}))
                if options.annotate is not None:
                    if writer is None:
                        height, width = frame.bgr.shape[:2]
                        fps = getattr(frames, "fps", 0.0) or 25.0
                        writer = video_writer(options.annotate, fps, (width, height))
                    tracked = getattr(result, "as_face_prediction", None)
                    shown = drawable(tracked() if tracked else result)
                    writer.write(draw_faces(cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB), shown))
                if options.max_frames is not None and count >= options.max_frames:
                    break
        finally:
            if writer is not None:
                writer.release()
    elapsed = time.perf_counter() - start
    typer.echo(json.dumps({
        "summary": True,
        "source": str(source),
        "frames": count,
        "elapsed_seconds": elapsed,
        "fps": count / elapsed if elapsed > 0 else 0.0,
        "dropped": (last or {}).get("dropped", 0),
        "detector_calls": (last or {}).get("detector_calls"),
        "backends": recognizer.backends,
        "annotated": str(options.annotate) if options.annotate is not None and count else None,
    }))  # fmt: skip
