"""Face tracks across frames: detect now and then, follow faces in between, stable ids.

The MTCNN cascade is most of a frame's cost; on a stream the faces barely move from one frame
to the next, so :class:`FaceTracker` lets the caller run the detector only every N frames
(or at once when a face is lost) and carries each face in between:

* **Motion**: every track has a constant-velocity Kalman filter
  (:class:`~edge_sdk.streams.kalman.BoxKalman`) advanced by the frames' timestamps.
* **Following** (``TrackerConfig.follow``): between detections the face's grey template, cut
  at its last detection, is matched (normalised cross-correlation) in a window around the
  predicted box; the match corrects the filter's centre. A match scoring under
  ``follow_score`` marks the track *lost*, and :meth:`FaceTracker.follow` says so, so the
  caller detects on that very frame.
* **Association** on detection frames: each track's predicted box against each detection by
  IoU, pairs taken greedily from the highest IoU down, none under ``iou_match``. The
  prediction carries the velocity, so two faces that cross keep their ids.

Birth and death (all settable in :class:`TrackerConfig`):

* A detection that matches no track starts a *tentative* track with a new id (ids count up
  from 1 and are never reused). It is *confirmed*, i.e. reported, once it has been matched
  by ``min_hits`` detection passes (its first included).
* A tentative track that misses a detection pass dies at once. A confirmed track that
  misses one is hidden (not reported) but kept, predicted and followed, so the face can be
  matched again; it dies after ``max_misses`` consecutive missed passes.
* Any track dies when ``max_coast`` seconds pass without a measurement (detection or good
  template match), or when its box has left the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_sdk.errors import InputError
from edge_sdk.streams.kalman import BoxKalman, KalmanConfig

DETECTED, FOLLOWED, PREDICTED = "detected", "tracked", "predicted"
_TEMPLATE_SIDE = 40  # templates are matched at this height (px): cost independent of face size
_MIN_INSIDE = 0.6  # a face box must be this much inside the frame to cut a template


@dataclass(frozen=True)
class TrackerConfig:
    """Association, birth, death and following rules of :class:`FaceTracker`.

    Attributes:
        iou_match: least IoU between a track's predicted box and a detection to pair them.
        min_hits: detection passes that must find a new face before its track is reported.
        max_misses: consecutive detection passes that may miss a confirmed track before it
            dies (the face left, turned away or is hidden for that long).
        max_coast: seconds a track may go without any measurement before it dies.
        follow: match each face's template between detections (off: the Kalman prediction
            alone carries the boxes, source ``"predicted"``).
        follow_score: least normalised correlation of a template match; below it the
            track is lost and the caller should detect.
        search: margin of the template search window around the predicted box, in box sizes.
        kalman: noise settings of each track's filter.
    """

    iou_match: float = 0.3
    min_hits: int = 1
    max_misses: int = 2
    max_coast: float = 1.0
    follow: bool = True
    follow_score: float = 0.6
    search: float = 0.5
    kalman: KalmanConfig = field(default_factory=KalmanConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_match <= 1.0:
            raise InputError(f"iou_match must be in (0, 1], got {self.iou_match!r}")
        for name in ("min_hits", "max_misses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if not (np.isfinite(self.max_coast) and self.max_coast > 0):
            raise InputError(f"max_coast must be a number of seconds > 0, got {self.max_coast!r}")
        if not -1.0 <= self.follow_score <= 1.0:
            raise InputError(f"follow_score must be in [-1, 1], got {self.follow_score!r}")
        if not (np.isfinite(self.search) and 0 < self.search <= 4):
            raise InputError(f"search must be in (0, 4] box sizes, got {self.search!r}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), (x1, y1, x2, y2)."""
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                0, None)  # fmt: skip
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                0, None)  # fmt: skip
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_pairs(overlap: np.ndarray, least: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest overlap first, each row and column used once, none
    under ``least`` (a handful of faces: greedy equals the optimal assignment in practice)."""
    pairs: list[tuple[int, int]] = []
    if overlap.size == 0:
        return pairs
    order = np.argsort(-overlap, axis=None, kind="stable")
    rows, cols = set(), set()
    for flat in order:
        r, c = divmod(int(flat), overlap.shape[1])
        if overlap[r, c] < least:
            break
        if r not in rows and c not in cols:
            pairs.append((r, c))
            rows.add(r)
            cols.add(c)
    return pairs


@dataclass(frozen=True)
class Template:
    """A face's grey patch for following: ``patch`` cut from the (frame-clipped) box and
    resized by ``scale``; ``box_height`` is the box's height then and ``offset`` the patch
    centre's offset from the box centre, in box sizes (non-zero at a frame edge)."""

    patch: np.ndarray
    scale: float
    box_height: float
    offset: tuple[float, float]


@dataclass(eq=False)
class Track:
    """One face followed over time (mutable: the tracker updates it every frame).

    ``source`` says how this frame's box was obtained: ``"detected"`` (matched a detection),
    ``"tracked"`` (template match) or ``"predicted"`` (Kalman prediction only).
    """

    track_id: int
    filter: BoxKalman
    seen: float
    score: float
    landmarks: np.ndarray  # (5, 2) relative to the box: (x - x1) / w, (y - y1) / h
    hits: int = 1
    misses: int = 0
    source: str = DETECTED
    template: Template | None = None
    lost: bool = False

    @property
    def box(self) -> np.ndarray:
        """Current box (x1, y1, x2, y2)."""
        return self.filter.box

    def landmarks_px(self) -> np.ndarray:
        """The last detected landmarks carried along with the box, in pixels."""
        x1, y1, x2, y2 = self.box
        return self.landmarks * np.array([x2 - x1, y2 - y1]) + np.array([x1, y1])


def _relative_landmarks(box: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is None:
        return np.full((5, 2), 0.5)
    x1, y1, x2, y2 = box
    size = np.array([max(x2 - x1, 1.0), max(y2 - y1, 1.0)])
    return (np.asarray(landmarks, dtype=float).reshape(-1, 2) - np.array([x1, y1])) / size


def _check_gray(gray: np.ndarray | None) -> None:
    if gray is not None and (gray.ndim != 2 or gray.dtype != np.uint8):
        raise InputError(f"the tracker follows grey uint8 (H, W) frames, got {gray.dtype} "
                         f"{gray.shape}")  # fmt: skip


class FaceTracker:
    """Face tracks with stable ids (module docs give the rules).

    Per frame call exactly one of :meth:`update` (a detector ran on this frame) or
    :meth:`follow` (it did not), with the frame's timestamp; then :meth:`visible` lists the
    tracks to report.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []
        self._next_id = 1
        self._now: float | None = None
        self.ended: list[int] = []  # ids of the tracks that died in the last step

    def clear(self) -> None:
        """End every track (a cut, a new source); new ids go on counting up."""
        self.ended = [t.track_id for t in self._tracks]
        self._tracks = []
        self._now = None

    @property
    def tracks(self) -> tuple[Track, ...]:
        """Every live track, tentative and hidden ones included."""
        return tuple(self._tracks)

    def visible(self) -> tuple[Track, ...]:
        """Confirmed tracks measured or carried on this frame and not missed by the last
        detection pass: the faces to report."""
        return tuple(
            t for t in self._tracks if t.hits >= self.config.min_hits and t.misses == 0
        )

    def _advance(self, timestamp: float) -> None:
        if not np.isfinite(timestamp):
            raise InputError(f"frame timestamp must be finite, got {timestamp!r}")
        if self._now is not None and timestamp < self._now:
            raise InputError(
                f"frame timestamps must not go backwards: {timestamp} s after {self._now} s"
            )
        dt = 0.0 if self._now is None else timestamp - self._now
        self._now = timestamp
        self.ended = []
        for track in self._tracks:
            track.filter.predict(dt)
            track.source, track.lost = PREDICTED, False

    def update(
        self,
        boxes: np.ndarray,
        timestamp: float,
        *,
        scores: np.ndarray | None = None,
        landmarks: np.ndarray | None = None,
        gray: np.ndarray | None = None,
    ) -> tuple[Track, ...]:
        """A detection pass: pair detections with tracks, start and end tracks.

        Args:
            boxes: (n, 4) detected boxes (x1, y1, x2, y2) of this frame.
            timestamp: the frame's time in seconds (never decreasing).
            scores: (n,) detection scores (default 1).
            landmarks: (n, 5, 2) detected landmarks, carried with the box until the next pass.
            gray: the frame in grey; templates for following are cut from it.

        Returns:
            The visible tracks after the pass.
        """
        _check_gray(gray)
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if not np.all(np.isfinite(boxes)):
            raise InputError("detected boxes must be finite")
        count = boxes.shape[0]
        scores = np.ones(count) if scores is None else np.asarray(scores, dtype=float)
        self._advance(timestamp)
        predicted = np.array([t.box for t in self._tracks]).reshape(-1, 4)
        pairs = greedy_pairs(iou_matrix(predicted, boxes), self.config.iou_match)
        matched_tracks = {r for r, _ in pairs}
        matched_boxes = {c for _, c in pairs}
        for r, c in pairs:
            track = self._tracks[r]
            track.filter.update(boxes[c])
            track.hits += 1
            track.misses = 0
            self._measured(track, boxes[c], scores[c], landmarks, c, gray, timestamp)
        for r, track in enumerate(self._tracks):
            if r not in matched_tracks:
                track.misses += 1
        survivors = []
        for track in self._tracks:
            tentative = track.hits < self.config.min_hits
            if track.misses and (tentative or track.misses >= self.config.max_misses):
                self.ended.append(track.track_id)
            else:
                survivors.append(track)
        self._tracks = survivors
        for c in range(count):
            if c not in matched_boxes:
                box = boxes[c]
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue  # an empty box cannot start a track
                track = Track(self._next_id, BoxKalman(box, self.config.kalman), timestamp,
                              float(scores[c]), np.full((5, 2), 0.5))  # fmt: skip
                self._next_id += 1
                self._measured(track, box, scores[c], landmarks, c, gray, timestamp)
                self._tracks.append(track)
        self._expire(gray)
        return self.visible()

    def _measured(
        self,
        track: Track,
        box: np.ndarray,
        score: float,
        landmarks: np.ndarray | None,
        index: int,
        gray: np.ndarray | None,
        timestamp: float,
    ) -> None:
        track.source, track.seen, track.score = DETECTED, timestamp, float(score)
        track.landmarks = _relative_landmarks(box, None if landmarks is None else landmarks[index])
        if gray is not None and self.config.follow:
            track.template = _cut_template(gray, box)

    def follow(self, timestamp: float, gray: np.ndarray | None = None) -> bool:
        """A frame without detection: predict every track and, with ``gray`` and
        ``follow`` on, correct it by template matching.

        Returns:
            True when every visible track was carried; False when one was lost (template
            match under ``follow_score`` or no template): the caller should detect now.
        """
        _check_gray(gray)
        self._advance(timestamp)
        carried = True
        for track in self._tracks:
            if gray is None or not self.config.follow:
                continue
            found = None if track.template is None else self._match(gray, track)
            if found is None:
                track.lost = True
                shown = track.hits >= self.config.min_hits and track.misses == 0
                carried = carried and not shown
                continue
            track.filter.update_centre(*found)
            track.source, track.seen = FOLLOWED, timestamp
        self._expire(gray)
        return carried

    def _match(self, gray: np.ndarray, track: Track) -> tuple[float, float] | None:
        """Box centre from the best template match around the predicted box, or None when
        it scores under ``follow_score`` or the window is too small (face off the frame)."""
        template = track.template
        assert template is not None
        x1, y1, x2, y2 = track.box
        w, h = x2 - x1, y2 - y1
        margin = self.config.search
        left, top = max(int(np.floor(x1 - margin * w)), 0), max(int(np.floor(y1 - margin * h)), 0)
        right = min(int(np.ceil(x2 + margin * w)), gray.shape[1])
        bottom = min(int(np.ceil(y2 + margin * h)), gray.shape[0])
        if right - left < 2 or bottom - top < 2:
            return None
        scale = template.scale * template.box_height / max(h, 1.0)  # follow size changes
        window = cv2.resize(
            gray[top:bottom, left:right],
            (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))),
            interpolation=cv2.INTER_AREA,
        )
        patch = template.patch
        if window.shape[0] < patch.shape[0] or window.shape[1] < patch.shape[1]:
            return None
        scores = cv2.matchTemplate(window, patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, (mx, my) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < self.config.follow_score:
            return None
        cx = left + (mx + patch.shape[1] / 2) / scale - template.offset[0] * w
        cy = top + (my + patch.shape[0] / 2) / scale - template.offset[1] * h
        return float(cx), float(cy)

    def _expire(self, gray: np.ndarray | None) -> None:
        """End tracks that coasted too long or left the frame."""
        assert self._now is not None
        keep = []
        for track in self._tracks:
            x1, y1, x2, y2 = track.box
            gone = self._now - track.seen > self.config.max_coast
            if gray is not None:
                height, width = gray.shape
                gone = gone or x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height
            if gone:
                self.ended.append(track.track_id)
            else:
                keep.append(track)
        self._tracks = keep


def _cut_template(gray: np.ndarray, box: Sequence[float]) -> Template | None:
    """The face's grey patch, ``_TEMPLATE_SIDE`` px high; a box partly off the frame is cut
    where it is inside (None when less than ``_MIN_INSIDE`` of it is, or it is flat)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    height, width = gray.shape
    cx1, cy1 = max(round(x1), 0), max(round(y1), 0)
    cx2, cy2 = min(round(x2), width), min(round(y2), height)
    w, h = x2 - x1, y2 - y1
    if cx2 - cx1 < 4 or cy2 - cy1 < 4 or (cx2 - cx1) * (cy2 - cy1) < _MIN_INSIDE * w * h:
        return None
    scale = _TEMPLATE_SIDE / (cy2 - cy1)
    size = (max(4, round((cx2 - cx1) * scale)), _TEMPLATE_SIDE)
    patch = cv2.resize(gray[cy1:cy2, cx1:cx2], size, interpolation=cv2.INTER_AREA)
    if float(patch.std()) < 1.0:
        return None  # a flat patch matches everywhere
    offset = (((cx1 + cx2) - (x1 + x2)) / 2 / w, ((cy1 + cy2) - (y1 + y2)) / 2 / h)
    return Template(patch, scale, h, offset)
