"""Video input: frame lists, (T, H, W, C) arrays, files and cameras -> checked RGB frames.

Clips handed to ``predict(video=...)`` are read whole, bounded by ``MAX_CLIP_FRAMES`` frames
and ``MAX_CLIP_BYTES`` decoded bytes (frames x H x W x 3: a few hundred 4K frames fill memory
long before the frame cap), and checked: no frames, frames of mixed sizes and undecodable
files are InputErrors. A file's frame size (and, where the container states it, its frame
count) is checked from the capture's properties before decoding.

:class:`FrameStream` (streams of a file or camera, stamped at the source) lives in
:mod:`edge_sdk.preprocess.frame_stream`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.preprocess.image import ImageInput, load_image

VideoInput = str | os.PathLike | np.ndarray | Sequence[ImageInput]
MAX_CLIP_FRAMES = 4096  # a clip handed to predict() is held in memory: refuse longer ones
MAX_CLIP_BYTES = 2 * 1024**3  # and refuse clips whose decoded RGB frames exceed 2 GiB


def _too_large(name: str, frames: int, nbytes: int, max_bytes: int, how: str = "") -> InputError:
    """The InputError for a clip whose decoded frames would exceed ``max_bytes``."""
    return InputError(
        f"{name}: {frames} frame(s){how} of decoded video take {nbytes} bytes, more than the "
        f"{max_bytes} allowed (max_bytes / MAX_CLIP_BYTES); pass a shorter or smaller clip"
    )


def read_video_file(
    path: str | os.PathLike[str],
    max_frames: int = MAX_CLIP_FRAMES,
    max_bytes: int = MAX_CLIP_BYTES,
) -> list:
    """Every frame of a video file as RGB uint8 (H, W, 3), at most ``max_frames`` frames and
    ``max_bytes`` decoded bytes (checked from the capture's properties first, then per frame).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such video file")
    capture = cv2.VideoCapture(str(file))
    try:
        if not capture.isOpened():
            raise InputError(f"{file}: not a readable video (OpenCV cannot open it)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if width > 0 and height > 0:  # refuse from the properties, before decoding
            size, shape = width * height * 3, f" of {width}x{height}"
            if size > max_bytes:
                raise _too_large(str(file), 1, size, max_bytes, shape)
            if declared > 0 and declared * size > max_bytes:
                shape += " (the count the file declares)"
                raise _too_large(str(file), declared, declared * size, max_bytes, shape)
        frames: list = []
        total = 0
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if len(frames) == max_frames:
                raise InputError(f"{file}: more than {max_frames} frames; pass a shorter clip")
            total += frame.nbytes
            if total > max_bytes:
                raise _too_large(str(file), len(frames) + 1, total, max_bytes, " or more")
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise InputError(f"{file}: no decodable frame")
    return frames


def load_frames(
    video: VideoInput,
    *,
    color: str = "rgb",
    name: str = "video",
    max_bytes: int = MAX_CLIP_BYTES,
) -> list:
    """A clip -> list of RGB uint8 frames of one size.

    Args:
        video: a video file path, a (T, H, W[, C]) array, or a sequence of images (paths,
            bytes or arrays, see :func:`edge_sdk.preprocess.image.load_image`).
        color: channel order of array frames (``"rgb"`` or ``"bgr"``).
        name: how errors name the clip.
        max_bytes: most bytes the decoded RGB frames may take (default ``MAX_CLIP_BYTES``).
    """
    if isinstance(video, (str, os.PathLike)):
        frames = read_video_file(video, max_bytes=max_bytes)
    elif isinstance(video, np.ndarray):
        if video.ndim not in (3, 4):
            raise InputError(
                f"{name}: a frame array must be (T, H, W) or (T, H, W, C), got {video.shape}"
            )
        if video.shape[0] > MAX_CLIP_FRAMES:
            raise InputError(f"{name}: more than {MAX_CLIP_FRAMES} frames")
        count, height, width = video.shape[:3]
        if count * height * width * 3 > max_bytes:
            raise _too_large(name, count, count * height * width * 3, max_bytes)
        frames = [load_image(f, color=color) for f in video]
    elif isinstance(video, Sequence) and not isinstance(video, (bytes, bytearray)):
        if len(video) > MAX_CLIP_FRAMES:
            raise InputError(f"{name}: more than {MAX_CLIP_FRAMES} frames")
        frames, total = [], 0
        for item in video:  # files are decoded one by one: stop once the cap is crossed
            frame = load_image(item, color=color)
            total += frame.nbytes
            if total > max_bytes:
                raise _too_large(name, len(frames) + 1, total, max_bytes, " or more")
            frames.append(frame)
    else:
        raise InputError(f"{name}: unsupported video input of type {type(video).__name__}")
    if not frames:
        raise InputError(f"{name}: no frames")
    first = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.shape != first:
            raise InputError(
                f"{name}: frames of mixed sizes: frame 0 is {first[1]}x{first[0]}, "
                f"frame {i} is {frame.shape[1]}x{frame.shape[0]}"
            )
    return frames


def subsample(count: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` frames spread evenly over ``count`` (all when it fits)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


