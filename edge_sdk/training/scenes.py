"""Scene inputs for training (CocoER), through the functions the deployed scene pipeline calls.

People are located as ``check accuracy``'s scene route locates them
(:mod:`edge_sdk.checks.accuracy.scene`), once per sample before the first epoch
(:func:`locate_people`, the family's ``prepare`` step):

* no box (CAER-S frames): the shared MTCNN face detector on the whole image, the largest face
  as the head (:func:`edge_sdk.checks.accuracy.pick_box`), the body by the documented expansion
  of the head box (:func:`edge_sdk.preprocess.windows.body_box_from_head`), as
  ``Recognizer.predict(scene=image)`` does for a bundle without a person detector;
* a body box (EMOTIC): the detected face that fits inside it as the head, else the head the
  expansion implies (:func:`edge_sdk.checks.accuracy.head_from_body`);
* a head box (AffectNet-style ``FACE_BOX_FORMATS``): that box, body by the expansion.

A frame where the detector finds no face is left out and counted (``"no face found"``):
``check accuracy`` scores such a frame as a miss, so its figure is lower than the trainer's by
the share of such frames in the validation split.

Each batch then decodes with :func:`edge_sdk.preprocess.image.load_image` and cuts the three
windows with :func:`edge_sdk.preprocess.windows.scene_windows` and the whole image with
:func:`edge_sdk.preprocess.face.face_tensor` under the bundle's two Preprocessings, exactly as
:class:`edge_sdk.pipelines.scene.ScenePipeline` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_sdk.datasets.base import Dataset, Sample
from edge_sdk.errors import InputError
from edge_sdk.manifest import Preprocessing
from edge_sdk.models.families import PrepareContext
from edge_sdk.training.faces import UnreadableSampleError

HEAD_KEY = "head_box"  # Sample.extra keys filled by locate_people
BODY_KEY = "body_box"
NO_FACE = "no face found"
UNREADABLE = "unreadable image"


def open_face_detector(detector: Any) -> Any:
    """The MTCNN cascade a Recognizer would share: of ``detector`` (a bundle or its folder),
    else of the default bundle (:func:`edge_sdk.defaults.default_bundle`)."""
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from edge_sdk.errors import BundleError
    from edge_sdk.pipelines.face import has_detector, open_detector

    if detector is None:
        from edge_sdk.defaults import default_bundle

        bundle = default_bundle()
    else:
        bundle = detector if isinstance(detector, ModelBundle) else ModelBundle.load(detector)
    if not has_detector(bundle):
        raise BundleError(f"detector bundle {bundle.manifest.family} has no pnet/rnet/onet")
    return open_detector(bundle, DeviceProbe().probe())[0]


def _pixels(sample: Sample) -> np.ndarray:
    from edge_sdk.preprocess.image import load_image

    source = sample.source if sample.path is None else str(sample.path)
    try:
        return load_image(sample.image if sample.image is not None else str(sample.path))
    except (InputError, OSError) as exc:
        raise UnreadableSampleError(source, str(exc)) from exc


def _person(
    sample: Sample, pixels: np.ndarray, fmt: str, detect: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """(head, body) boxes as check accuracy's scene route takes them; None: no face."""
    from edge_sdk.checks.accuracy import head_from_body, pick_box
    from edge_sdk.checks.accuracy.routing import FACE_BOX_FORMATS
    from edge_sdk.preprocess.windows import body_box_from_head

    if sample.box is not None and fmt in FACE_BOX_FORMATS:
        head = np.asarray(sample.box, dtype=np.float32)
        return head, body_box_from_head(head, pixels.shape)
    heads = detect(pixels).boxes.tolist()
    if sample.box is None:
        index = pick_box(heads, None)
        if index is None:
            return None
        head = np.asarray(heads[index], dtype=np.float32)
        return head, body_box_from_head(head, pixels.shape)
    body = list(sample.box)
    index = pick_box(heads, body)
    head_box = head_from_body(body) if index is None else heads[index]
    return np.asarray(head_box, dtype=np.float32), np.asarray(body, dtype=np.float32)


def locate_people(dataset: Dataset, context: PrepareContext) -> Dataset:
    """Samples with ``extra["head_box"]``/``extra["body_box"]`` (module docs); samples that
    cannot be decoded (an error when strict) or show no face are left out and counted."""
    detector = None
    kept = []
    for sample in dataset.samples:
        try:
            pixels = _pixels(sample)
        except UnreadableSampleError:
            if context.strict:
                raise
            context.skipped[UNREADABLE] += 1
            continue
        if detector is None and not _boxes_given(sample, dataset.format):
            detector = open_face_detector(context.detector)
        person = _person(sample, pixels, dataset.format, None if detector is None else
                         detector.detect)  # fmt: skip
        if person is None:
            context.skipped[NO_FACE] += 1
            continue
        head, body = person
        extra = {**sample.extra, HEAD_KEY: head, BODY_KEY: body}
        kept.append(dataclasses.replace(sample, extra=extra))
    return dataclasses.replace(dataset, samples=tuple(kept))


def _boxes_given(sample: Sample, fmt: str) -> bool:
    from edge_sdk.checks.accuracy.routing import FACE_BOX_FORMATS

    return sample.box is not None and fmt in FACE_BOX_FORMATS


def scene_input(
    sample: Sample, windows: Preprocessing, image: Preprocessing
) -> dict[str, np.ndarray]:
    """One located sample -> context, body, head windows and the whole image (1, C, H, W)."""
    from edge_sdk.preprocess.face import face_tensor
    from edge_sdk.preprocess.windows import scene_windows

    if HEAD_KEY not in sample.extra:
        raise InputError(f"{sample.source}: no head box; locate_people must run first")
    pixels = _pixels(sample)
    height, width = pixels.shape[:2]
    try:
        inputs = scene_windows(pixels, sample.extra[HEAD_KEY], sample.extra[BODY_KEY], windows)
    except InputError as exc:
        raise UnreadableSampleError(sample.source, str(exc)) from exc
    whole = np.array([[0, 0, width, height]], dtype=np.float32)
    inputs["image"] = face_tensor(pixels, whole, dataclasses.replace(image, crop={}))
    return inputs


def scene_batch(
    samples: Sequence[Sample],
    windows: Preprocessing,
    image: Preprocessing,
    augment: bool,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """(n, C, H, W) ``context``/``body``/``head``/``image``; ``augment`` mirrors a sample's
    four inputs together with probability 1/2 (the emotion is left-right symmetric)."""
    parts = [scene_input(s, windows, image) for s in samples]
    names = ("context", "body", "head", "image")
    batch = {n: np.concatenate([p[n] for p in parts]) if parts else np.zeros((0,)) for n in names}
    if augment and parts:
        flip = rng.random(len(parts)) < 0.5
        for name in names:
            batch[name][flip] = batch[name][flip][..., ::-1]
    return {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in batch.items()}
