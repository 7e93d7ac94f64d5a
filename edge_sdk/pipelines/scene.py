"""Scene pipeline (CocoER): one image, one or more people -> their emotion from three levels.

Per person: a head box (the caller's, or the shared face detector's box), a body box (the
caller's; else the bundle's person detector when it has one; else the documented expansion
of the head box, :func:`edge_sdk.preprocess.windows.body_box_from_head`), the three windows
(context = whole image, body, head) cut by the shared crop routine, then the exported graphs:

* ``levels`` (all people of the image in one batch) -> z_c, z_b, z_h, level_logits;
* ``alignment`` (the whole image, once) -> y_t (pseudo label, after F), z_t;

and finally the workspace (competition + coordination, :mod:`edge_sdk.workspace`), which
refines each level's prediction layer per person and gives the final prediction (the mean
of the refined levels) together with which levels the competition removed.

Workspace choice: ``workspace="auto"`` runs it in-process with the torch backend when torch
is installed (the reference) and with the numpy backend otherwise (the analytic form, equal to
~1e-12); ``"sidecar"`` starts the torch workspace as a supervised child process
(:class:`edge_sdk.sidecar.ManagedSidecar`; the main process then needs no torch); any object
with an ``update(outputs)`` method may be passed instead; ``workspace=None`` skips it, and the
final prediction is then the mean of the unrefined level predictions (``workspace`` in the
result says which ran). The in-process Workspace is stateless and shared by all threads; a
sidecar connection serves one request at a time, so calls to anything but an in-process
Workspace are serialised by a lock.

Person detector hook: a bundle that carries a graph named ``person_detector`` (input
``image`` (1, 3, S, S) under ``preprocessing["person_detector"]``; outputs ``boxes`` (n, 4)
as (x1, y1, x2, y2) fractions of the image and ``scores`` (n,)) gives body boxes through
:func:`match_bodies`. No family exports one yet.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.base import GraphPipeline
from edge_sdk.pipelines.common import (
    Timer,
    check_boxes,
    run_batched,
    sigmoid,
    softmax,
)
from edge_sdk.pipelines.detector import MTCNNDetector
from edge_sdk.pipelines.face import categories
from edge_sdk.pipelines.registry import register_pipeline
from edge_sdk.preprocess.face import face_tensor
from edge_sdk.preprocess.image import ImageInput, load_image
from edge_sdk.preprocess.windows import WINDOW_NAMES, body_box_from_head, scene_windows

GRAPHS = ("levels", "alignment")
PERSON_DETECTOR = "person_detector"


@dataclass(frozen=True)
class SceneInput:
    """An image and, optionally, the people's boxes in it, for ``predict(scene=...)``.

    Args:
        image: path, encoded bytes or array (see :func:`edge_sdk.preprocess.image.load_image`).
        head_boxes: (n, 4) (x1, y1, x2, y2) pixels; None: every face the detector finds.
        body_boxes: (n, 4), one per head box; None: person detector or head expansion.
    """

    image: ImageInput
    head_boxes: Any = None
    body_boxes: Any = None

    @classmethod
    def of(cls, scene: Any) -> SceneInput:
        """What ``predict(scene=...)`` takes: a SceneInput, a mapping with ``image`` (and
        optional ``head_boxes``/``body_boxes``), or a bare image."""
        if isinstance(scene, SceneInput):
            return scene
        if isinstance(scene, dict):
            unknown = sorted(set(scene) - {"image", "head_boxes", "body_boxes"})
            if unknown or "image" not in scene:
                raise InputError(
                    f"scene mapping needs 'image' (+ optional head_boxes, body_boxes); "
                    f"unknown keys {unknown}"
                )
            return cls(**scene)
        return cls(scene)


@dataclass(frozen=True)
class LevelResult:
    """One level (context, body or head) of one person.

    ``probabilities`` is F(g_θm(z_m)) before the workspace; ``refined`` after coordination
    (equal to ``probabilities`` when no workspace ran); ``loss`` is f_m against y_t.
    """

    label: str
    probabilities: dict[str, float]
    refined: dict[str, float]
    loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "refined": dict(self.refined),
            "loss": self.loss,
        }


@dataclass(frozen=True)
class ScenePerson:
    """One person's scene emotion with every level's details.

    ``labels`` lists the classes with probability >= 0.5 for multi-label bundles (EMOTIC)
    and just ``label`` otherwise. ``removed`` are the levels the competition removed, in
    order (empty when no workspace ran); ``kept`` is the level left.
    """

    head_box: tuple[float, float, float, float]
    body_box: tuple[float, float, float, float]
    body_source: str
    label: str
    labels: tuple[str, ...]
    probabilities: dict[str, float]
    levels: dict[str, LevelResult]
    pseudo_label: dict[str, float]
    removed: tuple[str, ...] = ()
    kept: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "head_box": list(self.head_box),
            "body_box": list(self.body_box),
            "body_source": self.body_source,
            "label": self.label,
            "labels": list(self.labels),
            "probabilities": dict(self.probabilities),
            "levels": {name: level.to_dict() for name, level in self.levels.items()},
            "pseudo_label": dict(self.pseudo_label),
            "removed": list(self.removed),
            "kept": self.kept,
        }


@dataclass(frozen=True)
class ScenePrediction:
    """Every person of one image (possibly none), timings per stage and what ran."""

    people: tuple[ScenePerson, ...]
    image_size: tuple[int, int]
    workspace: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; says explicitly when nobody was found."""
        return {
            "people": [p.to_dict() for p in self.people],
            "person_count": len(self.people),
            "no_person": not self.people,
            "image_size": {"width": self.image_size[0], "height": self.image_size[1]},
            "workspace": self.workspace,
            "timings_ms": dict(self.timings_ms),
            "backends": dict(self.backends),
        }


def match_bodies(
    heads: np.ndarray, persons: np.ndarray, scores: np.ndarray, image_shape: tuple[int, ...]
) -> tuple[np.ndarray, list[str]]:
    """A body box per head: the best-scoring person box containing the head's centre.

    Heads without such a person box fall back to :func:`body_box_from_head`. Returns the
    boxes and, per head, ``"detector"`` or ``"expansion"``.
    """
    bodies, sources = [], []
    for head in heads:
        cx, cy = (head[0] + head[2]) / 2, (head[1] + head[3]) / 2
        persons = persons.reshape(-1, 4)
        inside = (persons[:, 0] <= cx) & (cx <= persons[:, 2])
        inside &= (persons[:, 1] <= cy) & (cy <= persons[:, 3])
        if inside.any():
            best = int(np.argmax(np.where(inside, scores, -np.inf)))
            bodies.append(persons[best].astype(np.float32))
            sources.append("detector")
        else:
            bodies.append(body_box_from_head(head, image_shape))
            sources.append("expansion")
    return np.stack(bodies) if bodies else np.zeros((0, 4), np.float32), sources


def resolve_workspace(
    bundle: ModelBundle, workspace: Any, backend: str | None, levels_precision: str = "fp32"
) -> Any:
    """The workspace object for ``workspace`` ("auto", "torch", "numpy", None or an object).

    With an FP32 ``levels`` graph the workspace also checks that the engine's level logits
    equal z_m θ_mᵀ from its own copy of θ_l (within 1e-3): a guard against a workspace and an
    engine built from different weights. Reduced-precision engines skip that check.
    """
    if workspace is None or hasattr(workspace, "update"):
        return workspace
    if workspace not in ("auto", "torch", "numpy", "sidecar"):
        raise BundleError(
            "workspace must be 'auto', 'torch', 'numpy', 'sidecar', None or an object with "
            f"update(); got {workspace!r}"
        )
    if workspace == "sidecar":
        from edge_sdk.sidecar import ManagedSidecar, SidecarProcess

        return ManagedSidecar(SidecarProcess(bundle=bundle.root)).start()
    from edge_sdk.workspace import Workspace

    if workspace == "auto":
        has_torch = importlib.util.find_spec("torch") is not None
        workspace = "torch" if has_torch or backend == "torch" else "numpy"
    atol = 1e-3 if levels_precision == "fp32" else None
    return Workspace.from_bundle(bundle, backend=workspace, logits_atol=atol)


@register_pipeline("scene-cocoer")
class ScenePipeline(GraphPipeline):
    """CocoER: windows -> ``levels`` + ``alignment`` graphs -> workspace, per person."""

    modality = "scene"
    options = ("workspace",)

    def __init__(self, *args: Any, workspace: Any = "auto", **kwargs: Any) -> None:
        """GraphPipeline's arguments, and the workspace (module docs)."""
        self._workspace_option = workspace
        super().__init__(*args, **kwargs)

    def configure(self, manifest: Manifest) -> None:
        activation = manifest.config.get("activation", "softmax")
        if activation not in ("softmax", "sigmoid"):
            raise BundleError(f"{self.family}: unknown activation {activation!r}")
        self.multi_label = activation == "sigmoid"
        self.windows_prep = manifest.preprocessing["windows"]
        self.image_prep = dataclasses.replace(manifest.preprocessing["image"], crop={})

    def graph_names(self, manifest: Manifest) -> tuple[str, ...]:
        """``levels``, ``alignment`` and the person detector when the bundle has one."""
        names = tuple(g.name for g in manifest.graphs)
        return GRAPHS + ((PERSON_DETECTOR,) if PERSON_DETECTOR in names else ())

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        workspace = self._workspace_option
        self.workspace = resolve_workspace(
            bundle, workspace, backend, self.sessions["levels"].precision
        )
        from edge_sdk.workspace import Workspace

        self._own_workspace = workspace == "sidecar"
        self._workspace_lock = (
            None if self.workspace is None or isinstance(self.workspace, Workspace)
            else threading.Lock()
        )
        if self.workspace is None:
            self.workspace_name = "none"
        elif isinstance(self.workspace, Workspace):
            self.workspace_name = self.workspace.backend
        else:
            self.workspace_name = type(self.workspace).__name__
        self.detector: MTCNNDetector | None = None
        self.detector_backends: dict[str, str] = {}

    def bind(self, detector: MTCNNDetector, backends: dict[str, str]) -> None:
        """Use the Recognizer's shared face detector for head boxes."""
        self.detector, self.detector_backends = detector, dict(backends)

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def _body_boxes(
        self, pixels: np.ndarray, heads: np.ndarray, timer: Timer
    ) -> tuple[np.ndarray, list[str]]:
        if PERSON_DETECTOR not in self.sessions:
            bodies = [body_box_from_head(h, pixels.shape) for h in heads]
            return np.stack(bodies), ["expansion"] * len(heads)
        with timer("person_detector"):
            prep = dataclasses.replace(self.windows_prep, crop={})
            height, width = pixels.shape[:2]
            whole = np.array([[0, 0, width, height]], dtype=np.float32)
            out = self.sessions[PERSON_DETECTOR].run({"image": face_tensor(pixels, whole, prep)})
            persons = out["boxes"].reshape(-1, 4) * np.array([width, height, width, height])
            return match_bodies(heads, persons, out["scores"].reshape(-1), pixels.shape)

    def predict(
        self,
        image: ImageInput,
        *,
        head_boxes: Any = None,
        body_boxes: Any = None,
        color: str = "rgb",
    ) -> ScenePrediction:
        """Every person of ``image``: caller boxes, or one per face the detector finds."""
        timer = Timer()
        with timer("decode"):
            pixels = load_image(image, color=color)
        height, width = pixels.shape[:2]
        if head_boxes is None:
            if body_boxes is not None:
                raise InputError("body_boxes need their head_boxes (one head per body)")
            if self.detector is None:
                raise InputError("no face detector is bound: pass head_boxes")
            with timer("detect"):
                heads = self.detector.detect(pixels).boxes
            backends = {**self.detector_backends, **self.backends}
        else:
            heads = check_boxes(head_boxes, pixels.shape, "head_boxes")
            backends = dict(self.backends)
        if body_boxes is not None:
            bodies = check_boxes(body_boxes, pixels.shape, "body_boxes")
            if bodies.shape[0] != heads.shape[0]:
                raise InputError(
                    f"{bodies.shape[0]} body boxes for {heads.shape[0]} head boxes: give one each"
                )
            sources = ["caller"] * len(heads)
        elif len(heads):
            bodies, sources = self._body_boxes(pixels, heads, timer)
        if not len(heads):
            return ScenePrediction((), (width, height), self.workspace_name, timer.finish(),
                                   backends)
        with timer("windows"):
            per_person = [
                scene_windows(pixels, head, body, self.windows_prep)
                for head, body in zip(heads, bodies, strict=True)
            ]
            windows = {m: np.concatenate([w[m] for w in per_person]) for m in WINDOW_NAMES}
            whole = np.array([[0, 0, width, height]], dtype=np.float32)
            picture = face_tensor(pixels, whole, self.image_prep)
        with timer("levels"):
            levels = run_batched(self.sessions["levels"], self.graphs["levels"], windows)
        with timer("alignment"):
            alignment = self.sessions["alignment"].run({"image": picture})
        count = heads.shape[0]
        outputs = {
            **levels,
            "y_t": np.repeat(alignment["y_t"], count, axis=0),
            "z_t": np.repeat(alignment["z_t"], count, axis=0),
        }
        with timer("workspace"):
            people = self._people(outputs, heads, bodies, sources)
        return ScenePrediction(
            people, (width, height), self.workspace_name, timer.finish(), backends
        )

    def graph_outputs(self, outputs: dict[str, np.ndarray]) -> Any:
        """The workspace hook: the exported graphs' outputs -> the workspace's result."""
        if self.workspace is None:
            return None
        if self._workspace_lock is None:
            return self.workspace.update(outputs)
        with self._workspace_lock:
            return self.workspace.update(outputs)

    def close(self) -> None:
        """Close the sessions and stop a sidecar this pipeline started (a caller's workspace
        object is left alone)."""
        super().close()
        if self._own_workspace and self.workspace is not None:
            self.workspace.close()

    def _people(
        self,
        outputs: dict[str, np.ndarray],
        heads: np.ndarray,
        bodies: np.ndarray,
        sources: list[str],
    ) -> tuple[ScenePerson, ...]:
        initial = self._activate(outputs["level_logits"])  # (n, 3, k)
        result = self.graph_outputs(outputs)
        if result is None:
            refined, final, losses = initial, initial.mean(axis=1), None
        else:
            refined = np.asarray(result.level_probabilities, dtype=np.float32)
            final = np.asarray(result.probabilities, dtype=np.float32)
            losses = np.asarray(result.losses)
        people = []
        for i in range(heads.shape[0]):
            label, probabilities = categories(self.labels, final[i])
            if self.multi_label:
                chosen = tuple(lab for lab, p in probabilities.items() if p >= 0.5)
            else:
                chosen = (label,)
            levels = {}
            for m, name in enumerate(WINDOW_NAMES):
                level_label, level_probs = categories(self.labels, initial[i, m])
                levels[name] = LevelResult(
                    level_label,
                    level_probs,
                    categories(self.labels, refined[i, m])[1],
                    None if losses is None else float(losses[i, m]),
                )
            people.append(
                ScenePerson(
                    head_box=tuple(float(v) for v in heads[i]),
                    body_box=tuple(float(v) for v in bodies[i]),
                    body_source=sources[i],
                    label=label,
                    labels=chosen,
                    probabilities=probabilities,
                    levels=levels,
                    pseudo_label=categories(self.labels, outputs["y_t"][i])[1],
                    removed=() if result is None else tuple(result.removed_names(i)),
                    kept=None if result is None else result.kept_name(i),
                )
            )
        return tuple(people)
