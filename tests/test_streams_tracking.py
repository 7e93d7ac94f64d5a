"""Face tracker, Kalman filter and emotion smoothing of edge_sdk.streams (no models needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.errors import InputError
from edge_sdk.streams import (
    BoxKalman,
    EmotionSmoother,
    FaceTracker,
    KalmanConfig,
    SmoothingConfig,
    StreamConfig,
    TrackerConfig,
)
from tests.conftest import iou

FPS = 25.0


def box_at(x: float, y: float, size: float = 60.0) -> np.ndarray:
    return np.array([x, y, x + size, y + size])


def ids_by_position(tracker: FaceTracker) -> dict[int, np.ndarray]:
    return {t.track_id: t.box for t in tracker.visible()}


def test_tracker_keeps_ids_for_moving_boxes() -> None:
    """Two faces moving (with detector jitter) keep ids 1 and 2 over 40 frames."""
    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    for k in range(40):
        truth = [box_at(20 + 4 * k, 50 + k), box_at(400 - 3 * k, 200)]
        detections = np.array(truth) + rng.normal(0, 1.5, (2, 4))
        shown = tracker.update(detections[::-1] if k % 2 else detections, k / FPS)
        assert len(shown) == 2
        by_id = ids_by_position(tracker)
        assert set(by_id) == {1, 2}
        assert iou(by_id[1], truth[0]) > 0.8 and iou(by_id[2], truth[1]) > 0.8


def test_tracker_birth_needs_min_hits_and_death_after_max_misses() -> None:
    """A new face is shown after min_hits detections; a vanished one is hidden at its first
    miss and ends after max_misses; a face coming back later gets a new id."""
    tracker = FaceTracker(TrackerConfig(min_hits=2, max_misses=2))
    a, b = box_at(10, 10), box_at(300, 10)
    assert tracker.update(np.array([a]), 0.0) == ()  # tentative
    assert [t.track_id for t in tracker.update(np.array([a]), 0.1)] == [1]
    tracker.update(np.array([a, b]), 0.2)  # b is born tentative
    assert [t.track_id for t in tracker.visible()] == [1]
    tracker.update(np.array([a, b]), 0.3)
    assert [t.track_id for t in tracker.visible()] == [1, 2]
    tracker.update(np.array([b]), 0.4)  # a missed once: hidden, not ended
    assert [t.track_id for t in tracker.visible()] == [2]
    assert [t.track_id for t in tracker.tracks] == [1, 2] and tracker.ended == []
    tracker.update(np.array([b]), 0.5)  # second miss: ends
    assert tracker.ended == [1]
    tracker.update(np.array([a, b]), 0.6)
    tracker.update(np.array([a, b]), 0.7)
    assert [t.track_id for t in tracker.visible()] == [2, 3]  # ids are never reused
    tracker.update(np.array([b, box_at(600, 300)]), 0.8)  # tentative id 4 ...
    tracker.update(np.array([b]), 0.9)  # ... dies at its first miss
    assert 4 in tracker.ended


def test_tracker_hidden_track_is_matched_again_within_max_misses() -> None:
    """A face missed by one detection pass (blink, blur) keeps its id when found again."""
    tracker = FaceTracker(TrackerConfig(max_misses=3))
    for k in range(5):
        tracker.update(np.array([box_at(10 + 5 * k, 10)]), k / FPS)
    tracker.update(np.zeros((0, 4)), 5 / FPS)
    assert tracker.visible() == ()
    shown = tracker.update(np.array([box_at(10 + 5 * 6, 10)]), 6 / FPS)
    assert [t.track_id for t in shown] == [1]


@pytest.mark.parametrize("detect_every", [1, 3])
def test_tracker_keeps_ids_when_faces_cross(detect_every: int) -> None:
    """Two faces walking through each other keep their ids: the Kalman prediction carries
    each track's velocity through the frames where the boxes overlap."""
    tracker = FaceTracker()
    for k in range(50):
        left, right = box_at(50 + 8 * k, 100), box_at(450 - 8 * k, 108)
        t = k / FPS
        if k % detect_every == 0:
            tracker.update(np.array([right, left]), t)
        else:
            tracker.follow(t)  # no image: prediction only
        by_id = ids_by_position(tracker)
        assert set(by_id) == {1, 2}, k
        # track 2 was born on `left` (second in the first detection list)
        assert iou(by_id[2], left) > 0.5 and iou(by_id[1], right) > 0.5, k


def test_kalman_predicts_between_detections() -> None:
    """Detected every 5th frame, a face moving at constant speed is predicted on the frames
    in between to within 2 px once its velocity is learnt; the filter's velocity is right."""
    tracker = FaceTracker(TrackerConfig(follow=False))
    speed = np.array([90.0, -30.0])  # px/s
    errors = []
    for k in range(40):
        t = k / FPS
        truth = box_at(100 + speed[0] * t, 300 + speed[1] * t, 80)
        if k % 5 == 0:
            tracker.update(np.array([truth]), t)
        else:
            assert tracker.follow(t)
            (track,) = tracker.visible()
            assert track.source == "predicted"
            if k > 15:
                errors.append(np.abs(track.box - truth).max())
    assert max(errors) < 2.0, errors
    (track,) = tracker.visible()
    np.testing.assert_allclose(track.filter.velocity[:2], speed, atol=3.0)


def test_kalman_handles_uneven_time_steps() -> None:
    """The filter advances by seconds: a frame gap (live drops) predicts proportionally."""
    kalman = BoxKalman(box_at(0, 0, 50), KalmanConfig())
    for k in range(1, 20):
        kalman.predict(0.04)
        kalman.update(box_at(100 * 0.04 * k, 0, 50))
    kalman.predict(0.4)  # 10 frames' worth at once
    assert abs(kalman.box[0] - 100 * (0.04 * 19 + 0.4)) < 2.0
    with pytest.raises(InputError, match="backwards"):
        kalman.predict(-0.1)


def textured(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 4, shape[1] // 4), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def test_template_following_tracks_between_detections_and_reports_loss() -> None:
    """With grey frames the tracker follows a textured patch that turns (changes speed)
    between detections, within 2 px; when the patch vanishes, follow() asks to detect."""
    background = textured((240, 320), 1)
    face = textured((64, 64), 2)
    tracker = FaceTracker()
    x, y = 40.0, 60.0
    for k in range(12):
        vx = 4 if k < 6 else -2  # the velocity changes: prediction alone would overshoot
        x, y = x + vx, y + 1
        frame = background.copy()
        frame[int(y) : int(y) + 64, int(x) : int(x) + 64] = face
        truth = box_at(int(x), int(y), 64)
        if k == 0:
            tracker.update(np.array([truth]), k / FPS, gray=frame)
            continue
        assert tracker.follow(k / FPS, frame)
        (track,) = tracker.visible()
        assert track.source == "tracked"
        assert np.abs(track.box[:2] - truth[:2]).max() <= 2.0, (k, track.box, truth)
    assert not tracker.follow(12 / FPS, background)  # the face is gone: detect now
    assert tracker.tracks[0].lost


def test_tracker_refuses_bad_settings_and_backward_time() -> None:
    """Settings are checked with messages naming the field; time may not run backwards."""
    for bad, name in (({"iou_match": 0}, "iou_match"), ({"min_hits": 0}, "min_hits"),
                      ({"max_misses": 1.5}, "max_misses"), ({"max_coast": -1}, "max_coast"),
                      ({"search": 0}, "search")):  # fmt: skip
        with pytest.raises(InputError, match=name):
            TrackerConfig(**bad)
    with pytest.raises(InputError, match="detect_every"):
        StreamConfig(detect_every=0)
    with pytest.raises(InputError, match="accel"):
        KalmanConfig(accel=0)
    tracker = FaceTracker()
    tracker.update(np.array([box_at(0, 0)]), 1.0)
    with pytest.raises(InputError, match="backwards"):
        tracker.update(np.array([box_at(0, 0)]), 0.5)
    with pytest.raises(InputError, match="grey"):
        tracker.follow(2.0, np.zeros((4, 4, 3), np.uint8))


# ----------------------------------------------------------------------------- smoothing
def test_ema_smoothing_math() -> None:
    """EMA: the first vector starts it, then s = a p + (1 - a) s with a = 2 / (K + 1)."""
    smoother = EmotionSmoother(SmoothingConfig("ema", window=3))
    alpha = 0.5
    first = smoother.update(7, [1.0, 0.0])
    np.testing.assert_allclose(first, [1.0, 0.0])
    second = smoother.update(7, [0.0, 1.0])
    np.testing.assert_allclose(second, [1 - alpha, alpha])
    third = smoother.update(7, [0.2, 0.8])
    np.testing.assert_allclose(third, alpha * np.array([0.2, 0.8]) + (1 - alpha) * second)
    assert SmoothingConfig("ema", window=5, alpha=0.1).weight == 0.1


def test_mean_smoothing_uses_last_k_vectors() -> None:
    """mean: exactly the mean of the last K vectors, per track."""
    smoother = EmotionSmoother(SmoothingConfig("mean", window=2))
    smoother.update(1, [1.0, 0.0, 0.0])
    smoother.update(2, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(smoother.update(1, [0.0, 1.0, 0.0]), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(smoother.update(1, [0.0, 0.0, 1.0]), [0.0, 0.5, 0.5])
    np.testing.assert_allclose(smoother.update(2, [0.0, 0.0, 1.0]), [0.0, 0.0, 1.0])
    smoother.forget(1)
    assert smoother.tracks == (2,)
    np.testing.assert_allclose(smoother.update(1, [1.0, 0.0, 0.0]), [1.0, 0.0, 0.0])


def test_smoothing_steadies_a_flickering_label() -> None:
    """A face whose raw argmax flickers between two close classes gets a steady label."""
    smoother = EmotionSmoother(SmoothingConfig("ema", window=5))
    labels, raw_labels = [], []
    for k in range(1, 21):
        raw = {"happy": 0.6, "neutral": 0.4} if k % 3 else {"happy": 0.45, "neutral": 0.55}
        raw_labels.append(max(raw, key=raw.__getitem__))
        label, probabilities = smoother.smooth(3, raw)
        labels.append(label)
        assert abs(sum(probabilities.values()) - 1) < 1e-9
    assert set(raw_labels) == {"happy", "neutral"}
    assert set(labels) == {"happy"}
    assert smoother.smooth(4, {}) == (None, {})


def test_smoothing_refuses_bad_vectors_and_settings() -> None:
    """Changing label sets, NaN and bad settings are InputErrors naming the problem."""
    smoother = EmotionSmoother()
    smoother.update(1, [0.5, 0.5])
    with pytest.raises(InputError, match="label set changed"):
        smoother.update(1, [0.2, 0.3, 0.5])
    with pytest.raises(InputError, match="finite"):
        smoother.update(2, [np.nan, 1.0])
    with pytest.raises(InputError, match="method"):
        SmoothingConfig("median")
    with pytest.raises(InputError, match="window"):
        SmoothingConfig(window=0)
    with pytest.raises(InputError, match="alpha"):
        SmoothingConfig(alpha=1.5)
