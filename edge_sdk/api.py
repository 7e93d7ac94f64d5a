"""Public entry points: ``load()`` and the Recognizer it returns.

One Recognizer holds one or more bundles. Each bundle's ``config["pipeline"]`` picks its
pipeline class from :mod:`edge_sdk.pipelines.registry`, and the pipeline declares the
``predict`` modality it serves (face, scene, audio, dialog; video is served by the face
families, and by audio when both are given).

Shared face detector: only face-fer7 bundles carry the MTCNN graphs. Every other pipeline
that needs faces (CAF and Exp-CLIP heads, scene head boxes, audio-video and dialog frames)
uses one detector opened once per Recognizer, from, in this order: a loaded face-fer7
bundle, the ``detector=`` bundle, any loaded bundle with pnet/rnet/onet, or the built-in
default bundle (:func:`edge_sdk.defaults.default_bundle`, exported once into the cache).

Thread safety: ``predict`` may be called from any number of threads. Every call runs on an
internal :class:`~edge_sdk.pipelines.executor.BoundedExecutor` (``workers`` calls at a time,
``max_queue`` more waiting; a caller finding it full waits up to ``queue_timeout`` seconds,
then gets :class:`~edge_sdk.pipelines.executor.QueueFullError`). Sessions are opened once,
at construction; ONNX Runtime sessions are thread-safe, the PyTorch reference serialises its
calls, and the pipelines keep no per-call state.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, overload

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo, DeviceProbe
from edge_sdk.errors import BundleError, ClosedError, InputError, no_family_for
from edge_sdk.loading import (
    BundleSource,
    bundle_sources,
    check_executor_options,
    digest_pins,
    open_pinned,
    opened_bundles,
    refuse_untrained,
)
from edge_sdk.pipelines.blazeface import FaceDetector
from edge_sdk.pipelines.common import Timer
from edge_sdk.pipelines.detector import PNET_CELL
from edge_sdk.pipelines.dialog import DialogPrediction, RunningDialog, to_utterances
from edge_sdk.pipelines.executor import BoundedExecutor, QueueFullError
from edge_sdk.pipelines.face import (
    FacePrediction,
    analyze_faces,
    has_detector,
    open_detector,
)
from edge_sdk.pipelines.registry import MODALITIES, pipeline_class
from edge_sdk.pipelines.scene import SceneInput, ScenePrediction
from edge_sdk.pipelines.video import analyze_frames, detect_frames
from edge_sdk.prediction import Prediction
from edge_sdk.preprocess.audio import AudioInput
from edge_sdk.preprocess.image import ImageInput
from edge_sdk.preprocess.video import VideoInput, load_frames
from runtimes.base import Session

log = logging.getLogger(__name__)

__all__ = ["Prediction", "QueueFullError", "Recognizer", "load"]

_CLOSED = (
    "this Recognizer is closed (close() or the end of its with-block); "
    "open a new one with edge_sdk.load()"
)


class Recognizer:
    """Runs the bundles' pipelines on the best backend of this device (see module docs).

    Args:
        bundles: one opened bundle or several (at most one scene, audio and dialog bundle;
            any number of face families, whose heads run in this order).
        device: a probed DeviceInfo; None probes this machine.
        backend: force a backend for every graph (e.g. ``"ort-cpu"``, ``"torch"``).
        precision: require a precision for every graph; never silently changed.
        detector: a bundle with MTCNN graphs to use when no face-fer7 bundle is loaded, or
            a name: ``"auto"`` (BlazeFace full range; MTCNN when BlazeFace's weights are
            absent or ``min_face`` is below what BlazeFace finds at 640 px), ``"mtcnn"``,
            ``"blazeface-short"``, ``"blazeface-full"``, ``"blazeface-back"``.
        workspace: CocoER workspace: ``"auto"`` (torch in-process when installed, else
            numpy), ``"torch"``, ``"numpy"``, ``"sidecar"`` (torch in a supervised child
            process, stopped by :meth:`close`), an object with ``update(outputs)``, or None
            to skip it (see :mod:`edge_sdk.pipelines.scene`).
        workers, max_queue, queue_timeout: the bounded executor (module docs).
        min_face: smallest face side (pixels) the detector looks for; None keeps the
            bundle's (20, MTCNN's published setting). The pyramid starts at 12/min_face,
            so detection time falls roughly with its square: a kiosk whose users stand
            close can trade small faces for speed (measured: 40 about halves it).
        allow_untrained: open bundles exported with ``--untrained`` (random weights) for
            latency work, with a warning; refused otherwise (:func:`refuse_untrained`).
    """

    def __init__(
        self,
        bundles: ModelBundle | Sequence[ModelBundle],
        device: DeviceInfo | None = None,
        *,
        backend: str | None = None,
        precision: str | None = None,
        detector: ModelBundle | str | None = None,
        workspace: Any = "auto",
        workers: int = 2,
        max_queue: int = 16,
        queue_timeout: float | None = None,
        wrap: Callable[[str, Session], Session] | None = None,
        min_face: int | None = None,
        allow_untrained: bool = False,
    ) -> None:
        """Open every bundle's pipeline once.

        ``wrap(graph_name, session)`` decorates the sessions of the given bundles' own
        pipelines (INT8 calibration records what each graph sees through it); the shared
        detector of another bundle is not wrapped.
        """
        check_executor_options(workers, max_queue, queue_timeout)  # before opening anything
        opened = opened_bundles(bundles)
        refuse_untrained(opened, allow_untrained)
        self._closed = False
        self.bundles = tuple(opened)
        self.bundle = opened[0]
        self.device = device or DeviceProbe().probe()
        options = {"workspace": workspace, "detector": detector}
        self.pipelines: list[Any] = []
        self._detector: FaceDetector | None = None
        try:
            self._open_pipelines(opened, options, wrap, backend, precision, detector, min_face)
        except BaseException:
            self._close_sessions()  # a bundle that fails leaves none of the others open
            raise
        self._executor = BoundedExecutor(workers, max_queue, queue_timeout)

    def _open_pipelines(
        self,
        opened: list[ModelBundle],
        options: dict[str, Any],
        wrap: Callable[[str, Session], Session] | None,
        backend: str | None,
        precision: str | None,
        detector: ModelBundle | str | None,
        min_face: int | None,
    ) -> None:
        """Open every bundle's pipeline and the one shared detector, and bind them."""
        for bundle in opened:
            cls = pipeline_class(bundle)
            accepted = {k: v for k, v in options.items() if k in getattr(cls, "options", ())}
            if wrap is not None:
                accepted["wrap"] = wrap
            self.pipelines.append(
                cls(bundle, self.device, backend=backend, precision=precision, **accepted)
            )
        self._by_modality: dict[str, Any] = {}
        for pipeline in self.pipelines:
            if pipeline.modality == "face":
                continue
            if pipeline.modality in self._by_modality:
                first = self._by_modality[pipeline.modality].family
                raise BundleError(
                    f"two {pipeline.modality} bundles ({first}, {pipeline.family}): "
                    "load one per modality"
                )
            self._by_modality[pipeline.modality] = pipeline
        self.face_heads = tuple(p for p in self.pipelines if p.modality == "face")
        self._detector, self._detector_backends = self._open_detector(
            detector, backend, precision, min_face
        )
        if min_face is not None:
            self._set_min_face(min_face)
        for pipeline in self.pipelines:
            if hasattr(pipeline, "bind") and self._detector is not None:
                pipeline.bind(self._detector, self._detector_backends)
            if hasattr(pipeline, "bind_encoder"):
                pipeline.bind_encoder(self.face_heads)
        self._face_backends = dict(self._detector_backends)
        for head in self.face_heads:
            self._face_backends.update(head.backends)

    def _set_min_face(self, min_face: int) -> None:
        """Apply the ``min_face`` option to the one shared detector (every pipeline's)."""
        if isinstance(min_face, bool) or not isinstance(min_face, int) or min_face < PNET_CELL:
            raise InputError(
                f"min_face must be an integer number of pixels >= {PNET_CELL} "
                f"(P-Net's window), got {min_face!r}"
            )
        if self._detector is None:
            raise InputError("min_face given, but these bundles detect no faces")
        self._detector.config = replace(self._detector.config, min_face=min_face)

    def _open_detector(
        self,
        detector: ModelBundle | str | None,
        backend: str | None,
        precision: str | None,
        min_face: int | None,
    ) -> tuple[FaceDetector | None, dict[str, str]]:
        """The one shared detector (module docs say where it comes from)."""
        if isinstance(detector, str):
            from edge_sdk.pipelines.blazeface import open_named_detector

            return open_named_detector(detector, self.device, backend, precision, min_face)
        for pipeline in self.face_heads:
            found = getattr(pipeline, "detector", None)
            if found is not None:
                return found, dict(pipeline.detector_backends)
        needs = bool(self.face_heads) or any(m in self._by_modality for m in ("scene", "dialog"))
        if not needs:
            return None, {}
        if detector is None:
            detector = next((b for b in self.bundles if has_detector(b)), None)
        if detector is None:
            from edge_sdk.defaults import default_bundle

            detector = default_bundle()
        if not has_detector(detector):
            raise BundleError(f"detector bundle {detector.manifest.family} has no pnet/rnet/onet")
        return open_detector(detector, self.device, backend, precision)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels of the first bundle, in the order of its probability vectors."""
        return self.bundle.manifest.labels

    @property
    def modalities(self) -> tuple[str, ...]:
        """The ``predict`` arguments this Recognizer serves."""
        served = set(self._by_modality)
        if self.face_heads:
            served |= {"face", "video"}
        return tuple(m for m in (*MODALITIES, "video") if m in served)

    @property
    def backends(self) -> dict[str, str]:
        """Which backend/precision runs each graph, as ``{"family/graph": "backend/prec"}``.

        The shared detector's graphs are listed once, as ``detector/<graph>``, also when
        they belong to a loaded face-fer7 bundle.
        """
        out = {f"detector/{g}": b for g, b in self._detector_backends.items()}
        for pipeline in self.pipelines:
            owns_detector = self._detector is not None and (
                getattr(pipeline, "detector", None) is self._detector
            )
            out.update(
                {
                    f"{pipeline.family}/{g}": b
                    for g, b in pipeline.backends.items()
                    if not (owns_detector and g in self._detector_backends)
                }
            )
        return out

    @property
    def detector(self) -> FaceDetector | None:
        """The one MTCNN detector every face, scene, video and dialog call shares (None when
        no loaded family needs faces); its ``config`` holds ``min_face`` and thresholds."""
        return self._detector

    def close(self) -> None:
        """Finish admitted calls, stop the worker threads and any sidecar a pipeline
        started, then close every session: each pipeline's and the shared detector's.

        Later calls of ``predict`` raise :class:`~edge_sdk.errors.ClosedError`; closing
        twice is harmless.
        """
        self._closed = True
        self._executor.shutdown()
        self._close_sessions()

    def _close_sessions(self) -> None:
        for pipeline in self.pipelines:
            pipeline.close()
        if self._detector is not None:
            self._detector.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- predict
    @overload
    def predict(self, face: ImageInput, *, color: str = ...) -> FacePrediction: ...

    @overload
    def predict(
        self,
        face: ImageInput | None = ...,
        *,
        scene: ImageInput | SceneInput | dict | None = ...,
        audio: AudioInput | None = ...,
        video: VideoInput | None = ...,
        dialog: Sequence[Any] | RunningDialog | None = ...,
        color: str = ...,
    ) -> Prediction: ...

    def predict(
        self,
        face: ImageInput | None = None,
        *,
        scene: ImageInput | SceneInput | dict | None = None,
        audio: AudioInput | None = None,
        video: VideoInput | None = None,
        dialog: Sequence[Any] | RunningDialog | None = None,
        color: str = "rgb",
    ) -> FacePrediction | Prediction:
        """Run any combination of modalities in one call.

        Args:
            face: image (path, bytes or array): every face, with every face family's answer.
            scene: image, :class:`SceneInput` or ``{"image", "head_boxes", "body_boxes"}``:
                every person's CocoER emotion.
            audio: WAV path/bytes, :class:`~edge_sdk.preprocess.audio.Audio` or
                ``(samples, sample_rate)``: the audio-video family's clip emotion (fused with
                ``video`` when given).
            video: a video file, a (T, H, W, C) array or a list of frames: per-frame faces.
            dialog: a list of utterances (:class:`~edge_sdk.pipelines.dialog.Utterance`,
                mappings or strings) or a :class:`RunningDialog`: one emotion per utterance.
            color: channel order of array images/frames, ``"rgb"`` or ``"bgr"`` (OpenCV).

        Returns:
            A call with only ``face`` returns its :class:`FacePrediction` (what
            ``predict(image)`` has always returned); any other combination returns a
            :class:`Prediction` with one typed result per modality given.
        """
        given = {
            "face": face,
            "scene": scene,
            "audio": audio,
            "video": video,
            "dialog": dialog,
        }
        if all(v is None for v in given.values()):
            raise InputError("predict() needs an input: predict(face=image), scene=, audio=, ...")
        if all(v is None for k, v in given.items() if k != "face"):
            return self._run(self._face, face, color)
        return self._run(self._predict, given, color)

    def _refuse_closed(self) -> None:
        if self._closed:
            raise ClosedError(_CLOSED)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the executor; a closed Recognizer is a ClosedError, also when
        ``close()`` wins a race with this call."""
        self._refuse_closed()
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError as exc:  # the pool refuses new work once shut down
            if self._closed:
                raise ClosedError(_CLOSED) from exc
            raise
        return future.result()

    def open_dialog(self) -> RunningDialog:
        """A dialog to grow with ``add(utterance)``; each call re-scores it (module docs)."""
        self._refuse_closed()
        return RunningDialog(self._pipeline("dialog"))

    def _pipeline(self, modality: str) -> Any:
        if modality not in self._by_modality:
            raise no_family_for(modality, [b.manifest.family for b in self.bundles])
        return self._by_modality[modality]

    def _face(self, image: ImageInput, color: str) -> FacePrediction:
        if not self.face_heads or self._detector is None:
            raise no_family_for("face", [b.manifest.family for b in self.bundles])
        return analyze_faces(
            image, self._detector, self.face_heads, self._face_backends, color=color
        )

    def _predict(self, given: dict[str, Any], color: str) -> Prediction:
        timer = Timer()
        results: dict[str, Any] = {}
        if given["face"] is not None:
            with timer("face"):
                results["face"] = self._face(given["face"], color)
        if given["scene"] is not None:
            with timer("scene"):
                results["scene"] = self._scene(given["scene"], color)
        if given["audio"] is not None or given["video"] is not None:
            with timer("audio_video"):
                results.update(self._audio_video(given["audio"], given["video"], color))
        if given["dialog"] is not None:
            with timer("dialog"):
                results["dialog"] = self._dialog(given["dialog"])
        return Prediction(**results, timings_ms=timer.finish())

    def _scene(self, scene: Any, color: str) -> ScenePrediction:
        pipeline = self._pipeline("scene")
        scene = SceneInput.of(scene)
        return pipeline.predict(
            scene.image, head_boxes=scene.head_boxes, body_boxes=scene.body_boxes, color=color
        )

    def _audio_video(self, audio: Any, video: Any, color: str) -> dict[str, Any]:
        """Decode and detect the clip once; per-frame faces and/or the audio-video result."""
        out: dict[str, Any] = {}
        pipeline = self._pipeline("audio") if audio is not None else None
        if video is None:
            out["audio"] = pipeline.predict(audio)
            return out
        if not self.face_heads or self._detector is None:
            raise InputError("video needs a face family (frames are analysed face by face)")
        timer = Timer()
        with timer("decode"):
            frames = load_frames(video, color=color)
        detections = detect_frames(frames, self._detector, timer)
        if pipeline is not None:
            out["audio"] = pipeline.predict(audio, frames, detections)
        out["video"] = analyze_frames(
            frames, detections, self.face_heads, self._face_backends, timer
        )
        return out

    def _dialog(self, dialog: Any) -> DialogPrediction:
        pipeline = self._pipeline("dialog")
        if isinstance(dialog, RunningDialog):
            return dialog.predict()
        return pipeline.predict(to_utterances(dialog))


def load(
    bundle: BundleSource | Sequence[BundleSource] | None = None,
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: DeviceInfo | None = None,
    with_default: bool = False,
    digest: str | Sequence[str | None] | None = None,
    **options: Any,
) -> Recognizer:
    """Open one or several bundle directories (default: the built-in face-fer7 bundle).

    Args:
        bundle: a bundle directory or opened ModelBundle, a list of them, or None for the
            default bundle.
        backend: force a backend by name (e.g. ``"ort-cpu"``, ``"torch"``); None picks.
        precision: require a precision (``"fp32"``, ``"int8"``); never silently changed.
        device: a probed DeviceInfo; None probes this machine.
        with_default: also load the default face-fer7 bundle, first (face categories and
            the detector next to other families).
        digest: pin the bundle(s): ``sha256:<hex>`` as ``edge-sdk doctor`` prints it, one
            per given bundle (a list, None where any will do), or the default bundle's when
            ``bundle`` is None. Any other bundle is refused with a BundleError.
        options: passed to :class:`Recognizer` (detector, workspace, workers, max_queue,
            queue_timeout, min_face).
    """
    accepted = inspect.signature(Recognizer.__init__).parameters
    known = [n for n, p in accepted.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"load() got unknown options {unknown}; it takes {known}")
    check_executor_options(
        *(options.get(k, accepted[k].default) for k in ("workers", "max_queue", "queue_timeout"))
    )
    if bundle is None:
        sources: list[BundleSource] = []
        with_default = True
    else:
        sources = bundle_sources(bundle)
    pins = digest_pins(digest, max(len(sources), 1))
    opened = [open_pinned(b, pin) for b, pin in zip(sources, pins, strict=False)]
    if with_default:
        from edge_sdk.defaults import default_bundle

        default = default_bundle()
        opened.insert(0, default if sources else open_pinned(default, pins[0]))
    return Recognizer(opened, device, backend=backend, precision=precision, **options)
