"""Scene route: every person's CocoER emotion, with the sample's box as the caller's head or
body box (a body box gets the detected face inside it as its head, else the implied one)."""

from __future__ import annotations

from collections.abc import Sequence

from edge_sdk.checks.accuracy.face import pick_box
from edge_sdk.checks.accuracy.routing import FACE_BOX_FORMATS, Answer, Route, image_of
from edge_sdk.datasets.base import Sample


def head_from_body(body: Sequence[float]) -> list[float]:
    """The head box whose documented expansion (:func:`body_box_from_head`) is ``body``'s
    width: a square of a third of the body width, centred, a quarter head below its top."""
    from edge_sdk.preprocess.windows import BODY_ABOVE_HEADS, BODY_WIDTH_HEADS

    x1, y1, x2, y2 = (float(v) for v in body)
    side = max((x2 - x1) / BODY_WIDTH_HEADS, 1.0)
    centre = (x1 + x2) / 2
    top = y1 + BODY_ABOVE_HEADS * side
    return [centre - side / 2, top, centre + side / 2, min(top + side, max(y2, top + 1.0))]


def answer_scene(route: Route, sample: Sample) -> Answer:
    """The ``scene`` route (the package docs); None when no person is found."""
    from edge_sdk.preprocess.image import load_image

    recognizer = route.recognizer
    if sample.box is None:
        people = recognizer.predict(scene=image_of(sample)).scene.people
        index = pick_box([p.head_box for p in people], None)
        return None if index is None else dict(people[index].probabilities)
    pixels = load_image(image_of(sample))
    if route.format in FACE_BOX_FORMATS:
        request = {"image": pixels, "head_boxes": [list(sample.box)]}
    else:
        body = list(sample.box)
        detector = recognizer.detector
        heads = [] if detector is None else detector.detect(pixels).boxes.tolist()
        index = pick_box(heads, body)
        if index is None:
            head = head_from_body(body)
            route.note("head box from the body box (no face inside it)")
        else:
            head = heads[index]
        request = {"image": pixels, "head_boxes": [head], "body_boxes": [body]}
    people = recognizer.predict(scene=request).scene.people
    return dict(people[0].probabilities) if people else None
