"""The wire format shared by ``edge-sdk serve`` (:mod:`edge_sdk.serving.server`) and
``edge_sdk.connect()`` (:mod:`edge_sdk.serving.client`).

Every model takes one request per call with a leading batch axis of 1 (Triton's dynamic
batcher stacks requests along it) and answers with:

* ``result``: BYTES ``[1]``, the JSON of the result's ``to_dict()``, exactly what local
  ``predict`` returns (:func:`face_prediction`, :func:`prediction` rebuild the dataclasses);
* ``error``: BYTES ``[1]``, empty on success, else ``{"type": "InputError", "message": ...}``;
* ``probabilities``: FP32 ``[n, K]``, one row per face, person, clip or utterance, columns in
  the label order of ``result`` (the ``info`` model lists each family's labels); absent when
  there is no row (PyTriton 0.7.0 cannot send a zero-size tensor) or on error;
* ``boxes``: FP32 ``[n, 4]`` (``face`` models only; x1, y1, x2, y2 pixels), absent likewise.

Models:

* ``face``: ``image`` BYTES ``[1]``, an encoded image (PNG, JPEG, ... as a file holds it);
* ``face_pixels``: ``pixels`` UINT8 ``[H, W, 3]``, RGB;
* ``scene``, ``audio``, ``video``, ``dialog``: ``request`` BYTES ``[1]``, JSON of the
  ``predict`` argument(s), plus the optional ``media`` BYTES ``[m]`` holding the binary parts
  the JSON refers to by index (encoded images, WAV files, ``.npy`` arrays: see
  :class:`MediaWriter`). ``audio`` also takes ``video`` (the clip fused with the audio);
* ``info``: ``request`` BYTES ``[1]`` (ignored); ``result`` is the JSON of what is served
  (bundles, labels, modalities, backends, models).

A request whose input cannot be used is answered with Triton's error when it is alone in its
batch (the usual case); in a dynamic batch shared with good requests only its own ``error``
output is set, so a bad request never fails its neighbours (PyTriton fails a whole batch on
an exception). The error text carries ``edge-sdk-error:{"type": ..., "message": ...}``,
which the client turns back into the same :class:`~edge_sdk.errors.EdgeSDKError` subclass.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeSDKError, InputError

PROTOCOL = 1

# Triton model names.
FACE = "face"
FACE_PIXELS = "face_pixels"
SCENE = "scene"
AUDIO = "audio"
VIDEO = "video"
DIALOG = "dialog"
INFO = "info"
# Which ``predict`` arguments each request model takes.
MODEL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    SCENE: ("scene",),
    AUDIO: ("audio", "video"),
    VIDEO: ("video",),
    DIALOG: ("dialog",),
}

# Tensor names.
IMAGE = "image"
PIXELS = "pixels"
REQUEST = "request"
MEDIA = "media"
RESULT = "result"
ERROR = "error"
PROBABILITIES = "probabilities"
BOXES = "boxes"

ERROR_MARKER = "edge-sdk-error:"
NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------- errors
def error_payload(exc: EdgeSDKError) -> str:
    """``{"type": <class name>, "message": <text>}`` of an SDK error, as one JSON line."""
    return json.dumps({"type": type(exc).__name__, "message": str(exc)})


def _error_classes() -> dict[str, type[EdgeSDKError]]:
    """Every EdgeSDKError subclass defined in :mod:`edge_sdk.errors`, by name."""
    found: dict[str, type[EdgeSDKError]] = {}
    pending: list[type[EdgeSDKError]] = [EdgeSDKError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == EdgeSDKError.__module__:
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_from_payload(text: str, fallback: type[EdgeSDKError]) -> EdgeSDKError:
    """The typed error a payload describes (``fallback`` for an unknown type)."""
    try:
        record = json.loads(text)
        name, message = str(record["type"]), str(record["message"])
    except (ValueError, KeyError, TypeError):
        return fallback(text)
    return _error_classes().get(name, fallback)(message)


def error_in_message(message: str, fallback: type[EdgeSDKError]) -> EdgeSDKError | None:
    """The SDK error a Triton error text carries after :data:`ERROR_MARKER`, or None."""
    at = message.rfind(ERROR_MARKER)
    if at < 0:
        return None
    try:
        record, _ = json.JSONDecoder().raw_decode(message, at + len(ERROR_MARKER))
    except ValueError:
        return None
    return error_from_payload(json.dumps(record), fallback)


# --------------------------------------------------------------------------- media
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such {what} file")
    return file.read_bytes()


class MediaWriter:
    """Collects the binary parts of one request; its methods return the JSON that refers
    to them: ``{"$bytes": i}`` (the part as is), ``{"$array": i}`` (a ``.npy`` array), and
    for audio ``{"$audio": ref, "sample_rate": r, "channels_first": c}`` (an Audio) or
    ``{"$pair": [ref, r]}`` (a ``(samples, rate)`` tuple). The ``$`` keeps references apart
    from the request's own keys (a dialog utterance has an ``audio`` key)."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def _add(self, data: bytes, kind: str) -> dict[str, int]:
        self.blobs.append(data)
        return {kind: len(self.blobs) - 1}

    def image(self, value: Any, color: str) -> dict[str, int]:
        """A path (its bytes), encoded bytes, or an array (RGB after ``color``) as a part."""
        if isinstance(value, (str, os.PathLike)):
            return self._add(_read_file(value, "image"), "$bytes")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._add(bytes(value), "$bytes")
        if isinstance(value, np.ndarray):
            from edge_sdk.preprocess.image import to_rgb_uint8

            return self._add(_npy(to_rgb_uint8(value, color=color)), "$array")
        raise InputError(f"unsupported image input of type {type(value).__name__}")

    def audio(self, value: Any) -> dict[str, Any]:
        """A WAV path/bytes, an Audio or a ``(samples, rate)`` tuple, unchanged in meaning."""
        from edge_sdk.preprocess.audio import Audio

        if isinstance(value, (str, os.PathLike)):
            return self._add(_read_file(value, "audio"), "$bytes")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._add(bytes(value), "$bytes")
        if isinstance(value, Audio):
            return {
                "$audio": self._add(_npy(np.asarray(value.samples)), "$array"),
                "sample_rate": value.sample_rate,
                "channels_first": value.channels_first,
            }
        if isinstance(value, tuple) and len(value) == 2:
            samples, rate = value
            return {"$pair": [self._add(_npy(np.asarray(samples)), "$array"), rate]}
        raise InputError(f"unsupported audio input of type {type(value).__name__}")

    def video(self, value: Any, color: str) -> dict[str, int]:
        """A clip decoded here (a server never reads the caller's files) as (T, H, W, 3)."""
        from edge_sdk.preprocess.video import load_frames

        return self._add(_npy(np.stack(load_frames(value, color=color))), "$array")


def decode_value(value: Any, media: Sequence[bytes]) -> Any:
    """Inverse of :class:`MediaWriter`: references -> bytes, arrays, Audio or tuples."""
    if isinstance(value, list):
        return [decode_value(v, media) for v in value]
    if not isinstance(value, Mapping):
        return value
    if "$bytes" in value or "$array" in value:
        index = value.get("$bytes", value.get("$array"))
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(media):
            raise InputError(f"request refers to media part {index!r}; it has {len(media)}")
        data = bytes(media[index])
        return data if "$bytes" in value else _load_npy(data, index)
    if "$audio" in value:
        from edge_sdk.preprocess.audio import Audio

        samples = decode_value(value["$audio"], media)
        channels_first = value.get("channels_first")
        return Audio(samples, _integer(value.get("sample_rate"), "sample_rate"), channels_first)
    if "$pair" in value:
        pair = value["$pair"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError("request: an audio pair is [samples, sample_rate]")
        return (decode_value(pair[0], media), _integer(pair[1], "sample_rate"))
    return {k: decode_value(v, media) for k, v in value.items()}


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"request: {name} must be an integer, got {value!r}")
    return value


def _load_npy(data: bytes, index: int) -> np.ndarray:
    """A ``.npy`` part, never unpickled (object arrays are refused)."""
    if not data.startswith(NPY_MAGIC):
        raise InputError(f"media part {index}: not a .npy array")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"media part {index}: unreadable .npy array ({exc})") from exc


def parse_request(raw: bytes) -> dict[str, Any]:
    """The JSON object of a ``request`` tensor (InputError when it is not one)."""
    try:
        value = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"request: not UTF-8 JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"request: expected a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- results
def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _size(record: Mapping[str, Any]) -> tuple[int, int]:
    return (int(record["width"]), int(record["height"]))


_FACE_KEYS = frozenset(
    {"box", "landmarks", "detection_score", "label", "probabilities", "valence", "arousal",
     "zero_shot"}
)  # fmt: skip


def face(record: Mapping[str, Any]) -> Any:
    """A :class:`~edge_sdk.pipelines.face.Face` from its ``to_dict()``; the fields of face
    heads without a named attribute come back in ``extras`` (as the JSON the server sent)."""
    from edge_sdk.pipelines.face import Face, ZeroShot

    zero_shot = record.get("zero_shot")
    return Face(
        box=_floats(record["box"]),
        landmarks=tuple(_floats(p) for p in record["landmarks"]),
        detection_score=float(record["detection_score"]),
        label=record.get("label"),
        probabilities=dict(record.get("probabilities") or {}),
        valence=record.get("valence"),
        arousal=record.get("arousal"),
        zero_shot=None if zero_shot is None else ZeroShot(**zero_shot),
        extras={k: v for k, v in record.items() if k not in _FACE_KEYS},
    )


def face_prediction(record: Mapping[str, Any], backends: Mapping[str, str] | None = None) -> Any:
    """A :class:`~edge_sdk.pipelines.face.FacePrediction` from its ``to_dict()``
    (``backends`` for a video frame, whose dict leaves them out)."""
    from edge_sdk.pipelines.face import FacePrediction

    return FacePrediction(
        faces=tuple(face(f) for f in record["faces"]),
        image_size=_size(record["image_size"]),
        timings_ms=dict(record.get("timings_ms") or {}),
        backends=dict(record.get("backends", backends or {})),
    )


def scene_prediction(record: Mapping[str, Any]) -> Any:
    """A :class:`~edge_sdk.pipelines.scene.ScenePrediction` from its ``to_dict()``."""
    from edge_sdk.pipelines.scene import LevelResult, ScenePerson, ScenePrediction

    people = tuple(
        ScenePerson(
            head_box=_floats(p["head_box"]),
            body_box=_floats(p["body_box"]),
            body_source=p["body_source"],
            label=p["label"],
            labels=tuple(p["labels"]),
            probabilities=dict(p["probabilities"]),
            levels={name: LevelResult(**level) for name, level in p["levels"].items()},
            pseudo_label=dict(p["pseudo_label"]),
            removed=tuple(p["removed"]),
            kept=p["kept"],
        )
        for p in record["people"]
    )
    return ScenePrediction(
        people=people,
        image_size=_size(record["image_size"]),
        workspace=record["workspace"],
        timings_ms=dict(record["timings_ms"]),
        backends=dict(record["backends"]),
    )


def audio_prediction(record: Mapping[str, Any]) -> Any:
    """An :class:`~edge_sdk.pipelines.audio_video.AudioPrediction` from its ``to_dict()``."""
    from edge_sdk.pipelines.audio_video import AudioPrediction

    return AudioPrediction(**{**record, "probabilities": dict(record["probabilities"])})


def video_prediction(record: Mapping[str, Any]) -> Any:
    """A :class:`~edge_sdk.pipelines.video.VideoPrediction` from its ``to_dict()``."""
    from edge_sdk.pipelines.video import VideoPrediction

    backends = dict(record["backends"])
    frames = tuple(face_prediction(f, backends) for f in record["frames"])
    return VideoPrediction(frames, float(record["fps"]), dict(record["timings_ms"]), backends)


def dialog_prediction(record: Mapping[str, Any]) -> Any:
    """A :class:`~edge_sdk.pipelines.dialog.DialogPrediction` from its ``to_dict()``."""
    from edge_sdk.pipelines.dialog import DialogPrediction, UtteranceResult

    utterances = tuple(
        UtteranceResult(**{**u, "modalities": tuple(u["modalities"])})
        for u in record["utterances"]
    )
    return DialogPrediction(utterances, dict(record["timings_ms"]), dict(record["backends"]))


READERS = {
    "face": face_prediction,
    "scene": scene_prediction,
    "audio": audio_prediction,
    "video": video_prediction,
    "dialog": dialog_prediction,
}


def prediction(record: Mapping[str, Any]) -> Any:
    """An :class:`~edge_sdk.api.Prediction` from its ``to_dict()``."""
    from edge_sdk.api import Prediction

    parts = {name: READERS[name](record[name]) for name in READERS if name in record}
    return Prediction(**parts, timings_ms=dict(record.get("timings_ms") or {}))


def probability_rows(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """(n, K) float32 of label -> p mappings that share one label order ((0, 0) if none)."""
    rows = [r for r in rows if r]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray([list(r.values()) for r in rows], dtype=np.float32)
