"""Face and video routes: the face whose box fits the sample's (or the largest), the face
heads on a given box, and a clip's per-frame faces averaged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_sdk.checks.accuracy.routing import Answer, Route, image_of, media_of, va_head
from edge_sdk.datasets.base import Sample
from edge_sdk.errors import InputError


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _inside(box: Sequence[float], outer: Sequence[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def pick_box(boxes: Sequence[Sequence[float]], given: Sequence[float] | None) -> int | None:
    """Index of the largest box, or with ``given`` of the best-overlapping box whose centre
    lies inside it; None when there is none."""
    if not len(boxes):
        return None
    if given is None:
        return max(range(len(boxes)), key=lambda i: _area(boxes[i]))
    inside = [i for i in range(len(boxes)) if _inside(boxes[i], given)]
    if not inside:
        return None
    return max(inside, key=lambda i: (_iou(boxes[i], given), _area(boxes[i])))


def face_answer(route: Route, face: Any) -> Answer:
    """One face's answer in the route's task (None when the face has none): the
    (valence, arousal) result fields the valence/arousal head declares, else the categories."""
    if route.va:
        head = va_head(route.recognizer)
        values = tuple(face.value(name) for name in head.result_fields)
        if len(values) != 2:
            raise InputError(
                f"{head.family} declares result fields {head.result_fields} for valence/arousal; "
                "expected two"
            )
        return None if any(v is None for v in values) else values
    return dict(face.probabilities) if face.probabilities else None


def answer_face(route: Route, sample: Sample) -> Answer:
    """The ``face`` route: detected faces (the one fitting the sample's box), or given."""
    if route.faces == "given":
        return _given_face(route, sample)
    prediction = route.recognizer.predict(face=image_of(sample))
    index = pick_box([f.box for f in prediction.faces], sample.box)
    return None if index is None else face_answer(route, prediction.faces[index])


def _given_face(route: Route, sample: Sample) -> Answer:
    """The face heads on the sample's box, or on the whole image, without the detector."""
    from edge_sdk.pipelines.common import Timer
    from edge_sdk.pipelines.detector import Detections
    from edge_sdk.pipelines.face import faces_from_detections
    from edge_sdk.preprocess.image import load_image

    pixels = load_image(image_of(sample))
    height, width = pixels.shape[:2]
    found = Detections(
        boxes=np.asarray([sample.face_box(width, height)], dtype=np.float32),
        scores=np.ones(1, dtype=np.float32),
        landmarks=np.zeros((1, 5, 2), dtype=np.float32),
    )
    prediction = faces_from_detections(pixels, found, route.recognizer.face_heads, {}, Timer())
    return face_answer(route, prediction.faces[0])


def answer_video(route: Route, sample: Sample) -> Answer:
    """The ``video`` route: the largest face of each frame, answers averaged over frames."""
    _, video = media_of(sample)
    if video is None:
        raise InputError("no video file for this sample")
    frames = route.recognizer.predict(video=video).video.frames
    answers = []
    for frame in frames:
        index = pick_box([f.box for f in frame.faces], None)
        if index is not None and (answer := face_answer(route, frame.faces[index])):
            answers.append(answer)
    if not answers:
        return None
    if route.va:
        return tuple(float(v) for v in np.mean(np.asarray(answers), axis=0))
    names = list(answers[0])
    mean = np.mean([[a[n] for n in names] for a in answers], axis=0)
    return {n: float(p) for n, p in zip(names, mean, strict=True)}
