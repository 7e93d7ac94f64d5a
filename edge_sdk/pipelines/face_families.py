"""The face families without a detector of their own: CAF (valence/arousal), Exp-CLIP (zero-shot).

Their bundles hold only the face model. A Recognizer runs them as heads of the face pipeline
on the boxes of the one shared MTCNN detector (:func:`edge_sdk.pipelines.face.analyze_faces`);
the crop rule comes from each
bundle's ``preprocessing["face"]`` through the shared :func:`edge_sdk.preprocess.face.face_tensor`.

Each head declares the fields it fills, its face-table columns and its accuracy task (see
:class:`edge_sdk.pipelines.face.FaceHead`); :class:`SingleGraphHead` is the base a new face
family's head subclasses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.base import GraphPipeline
from edge_sdk.pipelines.common import run_batched, softmax
from edge_sdk.pipelines.face import (
    TASK_VALENCE_AROUSAL,
    TASK_ZERO_SHOT,
    Face,
    FaceColumn,
    ZeroShot,
    categories,
    crops_for,
)
from edge_sdk.pipelines.registry import register_pipeline


class SingleGraphHead(GraphPipeline):
    """A face family with one graph whose input is a batch of face crops (``input_name``).

    Subclasses set the graph's names, ``stage``, the declarations of
    :class:`~edge_sdk.pipelines.face.FaceHead` and ``fill``; ``feature_output`` names the
    per-face embedding output ("" when the graph has none).
    """

    modality = "face"
    graph_name = ""
    input_name = ""
    feature_output = ""
    stage = ""
    result_fields: tuple[str, ...] = ()
    columns: tuple[FaceColumn, ...] = ()
    accuracy_task: str | None = None

    def configure(self, manifest: Manifest) -> None:
        if "face" not in manifest.preprocessing:
            raise BundleError(f"{self.family} bundle lacks preprocessing['face']")
        self.prep = manifest.preprocessing["face"]

    def graph_names(self, manifest: Manifest) -> tuple[str, ...]:
        return (self.graph_name,)

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        self.graph = self.graphs[self.graph_name]
        self.session = self.sessions[self.graph_name]
        feature = next((t for t in self.graph.outputs if t.name == self.feature_output), None)
        self.feature_dim: int | None = None if feature is None else int(feature.shape[-1])

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """This family's face crops for ``boxes`` of one RGB uint8 image."""
        return crops_for(image, boxes, self.prep)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Graph outputs for a batch of crops (chunked to the graph's batch profile)."""
        return run_batched(self.session, self.graph, {self.input_name: batch})

    def features(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Per-face embedding (n, feature_dim)."""
        if self.feature_dim is None:
            raise NotImplementedError(f"{self.family} exports no face features")
        return outputs[self.feature_output]


def _zero_shot_p(face: Face) -> str:
    zs = face.zero_shot
    return f"{zs.probabilities[zs.label]:.3f}"


@register_pipeline("face-caf")
class ValenceArousalHead(SingleGraphHead):
    """face-caf: ``regressor`` graph -> valence, arousal in [-1, 1]; ``features`` embedding.

    Its ``features`` output (the CAF encoder's latent) is the per-frame face feature the
    audio-video family consumes.
    """

    graph_name = "regressor"
    input_name = "face"
    feature_output = "features"
    stage = "valence_arousal"
    result_fields = ("valence", "arousal")
    columns = (
        FaceColumn("valence", lambda face: f"{face.valence:+.3f}"),
        FaceColumn("arousal", lambda face: f"{face.arousal:+.3f}"),
    )
    accuracy_task = TASK_VALENCE_AROUSAL

    def fill(self, outputs: dict[str, np.ndarray], fields: list[dict[str, Any]]) -> None:
        """Set ``valence`` and ``arousal`` of each face (the manifest's label order)."""
        index = {name: i for i, name in enumerate(self.labels)}
        for i, va in enumerate(outputs["valence_arousal"]):
            fields[i]["valence"] = float(va[index["valence"]])
            fields[i]["arousal"] = float(va[index["arousal"]])


@register_pipeline("face-expclip")
class ZeroShotHead(SingleGraphHead):
    """face-expclip: ``zero_shot`` graph -> softmax over the bundle's vocabulary.

    The class prototypes of the vocabulary were computed at export time and live inside the
    graph, so the labels are the manifest's labels (the vocabulary) in the same order.
    """

    graph_name = "zero_shot"
    input_name = "image"
    feature_output = "embedding"
    stage = "zero_shot"
    result_fields = ("zero_shot",)
    columns = (
        FaceColumn("zero-shot", lambda face: face.zero_shot.label),
        FaceColumn("p (zs)", _zero_shot_p),
    )
    accuracy_task = TASK_ZERO_SHOT

    def fill(self, outputs: dict[str, np.ndarray], fields: list[dict[str, Any]]) -> None:
        """Set ``zero_shot``; also ``label``/``probabilities`` when no categorical family did."""
        for i, probs in enumerate(softmax(outputs["logits"])):
            label, mapping = categories(self.labels, probs)
            fields[i]["zero_shot"] = ZeroShot(label, mapping)
            if fields[i].get("label") is None:
                fields[i]["label"], fields[i]["probabilities"] = label, dict(mapping)
