"""The Triton callables of ``edge-sdk serve``: one Recognizer behind every model.

Each callable takes PyTriton's list of requests (one dynamic batch) and returns one dict of
output tensors per request, in the wire format of :mod:`edge_sdk.serving.codec`. A request
whose input the SDK refuses (an :class:`~edge_sdk.errors.EdgeSDKError`) fails alone: alone in
its batch it becomes Triton's error (the callable raises, PyTriton answers with the text),
in a batch only its ``error`` output is set, since PyTriton fails a whole batch on an
exception. The ``face`` models batch the graphs across requests (:meth:`Handlers.analyze`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeSDKError, InputError
from edge_sdk.serving import codec


def _bytes_of(array: np.ndarray) -> bytes:
    """The single element of a BYTES request tensor (shape [1, 1])."""
    flat = np.asarray(array, dtype=object).reshape(-1)
    if flat.size != 1:
        raise InputError(f"expected one BYTES element per request, got {flat.size}")
    item = flat[0]
    return item if isinstance(item, bytes) else bytes(item)


def _one(array: np.ndarray, name: str) -> np.ndarray:
    """The request's only item along Triton's batch axis."""
    if array.shape[0] != 1:
        raise InputError(f"{name}: send one item per request (batch axis 1), got {array.shape[0]}")
    return array[0]


def _bytes_tensor(data: bytes) -> np.ndarray:
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = data
    return out


def _answer(result: dict[str, Any] | None, error: str = "", **arrays: np.ndarray) -> dict:
    """One request's outputs (batch axis 1). Empty arrays are left out: PyTriton 0.7.0
    cannot pass a zero-size tensor through its shared memory (``memoryview: cannot cast
    view with zeros in shape``), so no face means no ``probabilities``/``boxes`` output."""
    payload = b"" if result is None else json.dumps(result).encode()
    out = {codec.RESULT: _bytes_tensor(payload), codec.ERROR: _bytes_tensor(error.encode())}
    out.update(
        {name: value[None].astype(np.float32) for name, value in arrays.items() if value.size}
    )
    return out


class _RequestFailedError(Exception):
    """Raised to make Triton answer a lone request with an error; its text carries the
    SDK error for the client (:data:`codec.ERROR_MARKER`)."""


def _finish(outcomes: list[Any], answer: Callable[[Any], dict]) -> list[dict]:
    """Answers for a batch of outcomes (results or EdgeSDKErrors): a lone failed request is a
    Triton error; in a batch, a failure sets only its own ``error`` output (codec docs)."""
    if len(outcomes) == 1 and isinstance(outcomes[0], EdgeSDKError):
        raise _RequestFailedError(codec.ERROR_MARKER + codec.error_payload(outcomes[0]))
    return [answer(o) for o in outcomes]


class Handlers:
    """The Triton callables over one Recognizer (see the module docs)."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer

    # ---------------------------------------------------------------- face (batched)
    def face(self, requests: Sequence[Any]) -> list[dict]:
        """Encoded images: decode each, then the batched face pipeline."""
        return self._faces([lambda r=r: _bytes_of(r[codec.IMAGE]) for r in requests])

    def face_pixels(self, requests: Sequence[Any]) -> list[dict]:
        """RGB uint8 arrays: the batched face pipeline."""
        return self._faces([lambda r=r: _one(r[codec.PIXELS], codec.PIXELS) for r in requests])

    def _faces(self, sources: list[Callable[[], Any]]) -> list[dict]:
        return _finish(self.analyze(sources), self._face_answer)

    def analyze(self, sources: list[Callable[[], Any]]) -> list[Any]:
        """FacePrediction (or the EdgeSDKError) per image: decode and detect one by one, then
        every face family once over the faces of all images (a failing image fails alone).

        Timings per image: its own ``decode`` and ``detect``, the shared stage of each face
        family, and ``total`` (their sum).
        """
        from edge_sdk.pipelines.common import Timer
        from edge_sdk.pipelines.video import analyze_frames
        from edge_sdk.preprocess.image import load_image

        recognizer = self.recognizer
        detector = recognizer._detector  # the one shared MTCNN detector
        outcomes: list[Any] = [None] * len(sources)
        ok: list[tuple[int, np.ndarray, Any, dict[str, float]]] = []
        for i, source in enumerate(sources):
            timer = Timer()
            try:
                with timer("decode"):
                    pixels = load_image(source())
                with timer("detect"):
                    found = detector.detect(pixels)
            except EdgeSDKError as exc:
                outcomes[i] = exc
                continue
            ok.append((i, pixels, found, timer.stages))
        if not ok:
            return outcomes
        shared = Timer()
        try:
            video = analyze_frames(
                [p for _, p, _, _ in ok], [f for _, _, f, _ in ok],
                recognizer.face_heads, recognizer._face_backends, shared,
            )  # fmt: skip
        except EdgeSDKError as exc:
            for i, *_ in ok:
                outcomes[i] = exc
            return outcomes
        heads = {k: v for k, v in video.timings_ms.items() if k != "total"}
        for (i, _, _, own), frame in zip(ok, video.frames, strict=True):
            stages = {**own, **heads}
            stages["total"] = sum(stages.values())
            outcomes[i] = dataclasses.replace(frame, timings_ms=stages)
        return outcomes

    def _face_answer(self, outcome: Any) -> dict:
        if isinstance(outcome, EdgeSDKError):
            return _answer(None, codec.error_payload(outcome))
        probabilities = codec.probability_rows([f.probabilities for f in outcome.faces])
        if probabilities.shape[0] != len(outcome.faces):
            probabilities = np.zeros((len(outcome.faces), 0))
        boxes = np.asarray([f.box for f in outcome.faces], dtype=np.float32).reshape(-1, 4)
        return _answer(outcome.to_dict(), probabilities=probabilities, boxes=boxes)

    # ---------------------------------------------------------------- request models
    def request_model(self, model: str) -> Callable[[Sequence[Any]], list[dict]]:
        """The callable of ``scene``, ``audio``, ``video`` or ``dialog``."""
        allowed = codec.MODEL_ARGUMENTS[model]

        def infer(requests: Sequence[Any]) -> list[dict]:
            return _finish([self._predict(r, model, allowed) for r in requests], self._answer)

        infer.__name__ = f"infer_{model}"
        return infer

    def _predict(self, request: Any, model: str, allowed: tuple[str, ...]) -> Any:
        try:
            call = codec.parse_request(_bytes_of(request[codec.REQUEST]))
            media_tensor = request.data.get(codec.MEDIA)
            media = [] if media_tensor is None else list(_one(media_tensor, codec.MEDIA))
            unknown = sorted(set(call) - {*allowed, "color"})
            if unknown or not any(call.get(k) is not None for k in allowed):
                raise InputError(
                    f"the {model} model takes {list(allowed)} (+ color); got {sorted(call)}"
                )
            arguments = {k: codec.decode_value(call.get(k), media) for k in allowed}
            color = call.get("color", "rgb")
            if model == "dialog":
                arguments["dialog"] = _utterances(arguments["dialog"])
            result = self.recognizer.predict(**arguments, color=color)
        except EdgeSDKError as exc:
            return exc
        return {k: v for k, v in result.to_dict().items() if k in allowed}

    def _answer(self, outcome: Any) -> dict:
        if isinstance(outcome, EdgeSDKError):
            return _answer(None, codec.error_payload(outcome))
        rows: list[dict[str, float]] = []
        if "scene" in outcome:
            rows = [p["probabilities"] for p in outcome["scene"]["people"]]
        elif "audio" in outcome:
            rows = [outcome["audio"]["probabilities"]]
        elif "dialog" in outcome:
            rows = [u["probabilities"] for u in outcome["dialog"]["utterances"]]
        return _answer(outcome, probabilities=codec.probability_rows(rows))

    # ---------------------------------------------------------------- info
    def info(self, requests: Sequence[Any]) -> list[dict]:
        """What is served, for :func:`edge_sdk.connect` (and anyone curious)."""
        payload = describe(self.recognizer)
        return [_answer(payload) for _ in requests]


def _utterances(value: Any) -> list[Any]:
    """Decoded dialog entries -> Utterances (keys as ``Utterance.from_value`` takes them)."""
    from edge_sdk.pipelines.dialog import Utterance

    if not isinstance(value, list):
        raise InputError("dialog: expected a list of utterances")
    return [Utterance.from_value(v, i) for i, v in enumerate(value)]


def describe(recognizer: Any) -> dict[str, Any]:
    """The ``info`` model's answer: bundles, pipelines (with what the accuracy check asks of
    them), modalities, labels, backends and the Triton model of each modality."""
    import edge_sdk

    pipelines = []
    for p in recognizer.pipelines:
        entry: dict[str, Any] = {
            "modality": p.modality,
            "family": p.family,
            "labels": list(getattr(p, "labels", None) or ()),
        }
        if p.modality == "face":
            entry["stage"] = p.stage
            entry["accuracy_task"] = p.accuracy_task
            entry["result_fields"] = list(p.result_fields)
        if hasattr(p, "max_utterances"):
            entry["max_utterances"] = int(p.max_utterances)
        if hasattr(p, "encoder"):
            entry["encoder"] = p.encoder is not None
        pipelines.append(entry)
    return {
        "protocol": codec.PROTOCOL,
        "edge_sdk": edge_sdk.__version__,
        "bundles": [
            {
                "family": b.manifest.family,
                "variant": b.manifest.variant,
                "labels": list(b.manifest.labels),
            }
            for b in recognizer.bundles
        ],
        "pipelines": pipelines,
        "modalities": list(recognizer.modalities),
        "labels": list(recognizer.labels),
        "backends": dict(recognizer.backends),
        "models": served_models(recognizer),
    }


def served_models(recognizer: Any) -> dict[str, str]:
    """Triton model per ``predict`` argument the recognizer serves (``face`` also has
    ``face_pixels`` for arrays)."""
    modalities = set(recognizer.modalities)
    models = {}
    if "face" in modalities:
        models["face"] = codec.FACE
    for name in ("scene", "audio", "video", "dialog"):
        if name in modalities:
            models[name] = name
    return models
