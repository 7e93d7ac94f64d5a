"""Face inputs for training, through the very functions the deployed face pipeline calls.

``check accuracy --faces given`` and a Recognizer's face heads decode with
:func:`edge_sdk.preprocess.image.load_image` and cut the model input with
:func:`edge_sdk.pipelines.face.crops_for` (``face_tensor`` under the bundle's Preprocessing)
on the sample's face box, or on the whole image when the sample has none (FER2013 rows,
RAF-DB aligned faces, folder crops). Training uses the same two calls, so a model never sees
a crop that deployment would cut differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_sdk.datasets.samples import Sample
from edge_sdk.errors import InputError
from edge_sdk.manifest import Preprocessing


class UnreadableSampleError(InputError):
    """A sample whose media cannot be decoded or cropped; ``source`` names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: unreadable sample: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple:
        """Picklable across DataLoader worker processes."""
        return (type(self), (self.source, self.reason))


def face_box(sample: Sample, pixels: np.ndarray) -> np.ndarray:
    """(1, 4) float32 box: the sample's face box, else the whole image (as ``faces=given``)."""
    height, width = pixels.shape[:2]
    return np.asarray([sample.face_box(width, height)], dtype=np.float32)


def face_input(sample: Sample, prep: Preprocessing) -> np.ndarray:
    """One sample -> (C, H, W) float32 model input, exactly as deployed."""
    from edge_sdk.pipelines.face import crops_for
    from edge_sdk.preprocess.image import load_image

    source = sample.source if sample.path is None else str(sample.path)
    try:
        pixels = load_image(sample.image if sample.image is not None else str(sample.path))
        return crops_for(pixels, face_box(sample, pixels), prep)[0]
    except (InputError, OSError) as exc:
        raise UnreadableSampleError(source, str(exc)) from exc


def face_batch(
    samples: Sequence[Sample],
    prep: Preprocessing,
    augment: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, C, H, W) inputs; ``augment`` mirrors each crop with probability 1/2.

    Mirroring is the only augmentation: it keeps the expression (and valence/arousal) and,
    applied after normalisation, touches nothing of the deployed preprocessing.
    """
    batch = np.stack([face_input(s, prep) for s in samples]) if samples else np.zeros((0,))
    if augment and len(samples):
        flip = rng.random(len(samples)) < 0.5
        batch[flip] = batch[flip][..., ::-1]
    return np.ascontiguousarray(batch, dtype=np.float32)
