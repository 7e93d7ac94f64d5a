"""Frame timestamps from the video, and live sources that drop (and count) stale frames."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.streams import PacedCapture, TimedFrameStream


def write_video(path: Path, fps: float, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A clip whose frame k is grey level 20 * k (so a frame's content names its index)."""
    codec = {".avi": "MJPG", ".mp4": "mp4v"}[path.suffix]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened()
    for k in range(count):
        writer.write(np.full((size[1], size[0], 3), 20 * k, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_file_timestamps_come_from_the_video_not_wall_clock(tmp_path: Path, suffix: str) -> None:
    """Frame k of a 10 fps file is at k / 10 s within 1 ms, read fast or slowly (the old
    stream stamped the consumer's wall time: ~0 s when read fast, ~k * delay when slow),
    and a slow consumer gets every frame of a file."""
    fps, count = 10.0, 12
    video = write_video(tmp_path / f"clip{suffix}", fps, count)
    for delay in (0.0, 0.03):
        seen = []
        with TimedFrameStream(video) as frames:
            for frame in frames:
                seen.append(frame)
                time.sleep(delay)
        assert [f.index for f in seen] == list(range(count))
        for k, frame in enumerate(seen):
            assert abs(frame.seconds - k / fps) < 1e-3, (delay, k, frame.seconds)
            assert frame.clock == "pts" and frame.dropped == 0 and frame.captured_at is None
            assert abs(float(frame.bgr.mean()) - 20 * k) < 8  # the content is frame k (lossy)


def test_live_source_drops_stale_frames_and_counts_them() -> None:
    """A slow consumer of a 100 fps camera gets the newest frame each time (latency stays
    under one processing step instead of growing) and the count of frames it skipped."""
    fps = 100.0
    frames = [np.full((24, 32, 3), k % 256, np.uint8) for k in range(400)]
    seen = []
    with TimedFrameStream(0, opener=lambda: PacedCapture(frames, fps)) as stream:
        started = time.time()
        for frame in stream:
            latency = time.time() - frame.captured_at
            seen.append((frame, latency))
            if frame.index == 8:
                break
            time.sleep(0.05)  # five camera frames per processed frame
    assert len(seen) == 9
    for frame, latency in seen:
        assert frame.position == frame.index + frame.dropped
        assert int(frame.bgr[0, 0, 0]) == frame.position % 256  # the frame it says it is
        assert frame.clock == "capture" and started - 1 <= frame.captured_at <= time.time()
        assert latency < 0.04, latency  # no backlog: 8 frames late would be 0.35 s
    last = seen[-1][0]
    assert last.dropped >= 8 * 2, last.dropped  # ~4 per step; 2 leaves room for a busy CPU
    drops = [f.dropped for f, _ in seen]
    assert drops == sorted(drops)
    # capture times follow the camera's clock: position / fps from the first frame
    first = seen[0][0]
    for frame, _ in seen[1:]:
        expected = (frame.position - first.position) / fps
        assert abs(frame.seconds - expected) < 0.02, (frame.seconds, expected)


def test_timed_stream_refuses_missing_files_and_dead_sources(tmp_path: Path) -> None:
    """Missing files and a camera that never delivers are InputErrors naming the source."""
    with pytest.raises(InputError, match="no such video file"):
        TimedFrameStream(tmp_path / "missing.avi")

    class Closed:
        def isOpened(self) -> bool:
            return False

    with pytest.raises(InputError, match="closed capture"):
        TimedFrameStream(0, opener=Closed)
    opened: list[PacedCapture] = []

    def camera_that_dies() -> PacedCapture:
        """One frame on the first opening, none after a reconnect."""
        capture = PacedCapture([np.zeros((8, 8, 3), np.uint8)], 50.0)
        if opened:
            capture.read()  # used up: this camera delivers nothing
        opened.append(capture)
        return capture

    stream = TimedFrameStream(0, read_timeout=0.2, reconnects=1, opener=camera_that_dies)
    delivered = []
    with stream, pytest.raises(InputError, match="after 1 reconnects"):
        for frame in stream:
            delivered.append(frame.index)
    assert delivered == [0] and len(opened) == 2
