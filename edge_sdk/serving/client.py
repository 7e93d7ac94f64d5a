"""``edge_sdk.connect(url)``: a Recognizer whose ``predict`` runs on an ``edge-sdk serve``
server (Triton), with the same signature, result types and errors as ``load()``'s.

Inputs travel as :mod:`edge_sdk.serving.codec` describes: image files and bytes as they are
(the server decodes them), arrays as RGB uint8 pixels (``color`` is applied here), video
clips decoded here (a server never reads the caller's files). The server answers with each
result's ``to_dict()``; the dataclasses are rebuilt from it, so a remote result equals the
local one field for field (``timings_ms`` are the server's, plus ``roundtrip``: the call's
wall time seen here). An input the server refuses raises the same
:class:`~edge_sdk.errors.EdgeSDKError` subclass as a local call (InputError for a corrupt
image); a server that cannot be reached or fails otherwise raises
:class:`~edge_sdk.errors.ServerError`.

Thread safety: ``predict`` may be called from any number of threads (one Triton client per
thread; tritonclient's HTTP client is not thread-safe).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from edge_sdk.errors import ClosedError, EdgeSDKError, InputError, ServerError, no_family_for
from edge_sdk.serving import codec

SCHEMES = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


@dataclass(frozen=True)
class RemoteManifest:
    """What a client knows of a served bundle's manifest."""

    family: str
    variant: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RemoteBundle:
    """A bundle loaded by the server (``bundle.manifest.family`` as for a local bundle)."""

    manifest: RemoteManifest


@dataclass(frozen=True)
class RemotePipeline:
    """A pipeline of the server's Recognizer: what callers (the accuracy check) ask of one.

    ``stage``, ``accuracy_task`` and ``result_fields`` are set for face families (what
    their heads declare; see :class:`edge_sdk.pipelines.face.FaceHead`);
    ``encoder`` is True when an audio-video family fuses per-frame face features (None
    otherwise, as a local pipeline's encoder is None); ``max_utterances`` bounds a dialog
    family's context.
    """

    modality: str
    family: str
    labels: tuple[str, ...]
    stage: str | None = None
    accuracy_task: str | None = None
    result_fields: tuple[str, ...] = ()
    encoder: Literal[True] | None = None
    max_utterances: int | None = None


def parse_url(url: str) -> tuple[str, str]:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` (HTTP) -> (scheme,
    ``host:port``); InputError otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"server URL must be a non-empty string, got {url!r}")
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in SCHEMES:
        raise InputError(f"server URL {url!r}: scheme must be one of {SCHEMES}")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"server URL {url!r}: expected scheme://host:port")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise InputError(f"server URL {url!r}: {exc}") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, f"{host}:{port}"


class RemoteRecognizer:
    """A served Recognizer (see the module docs); made by :func:`connect`.

    Attributes mirror a local Recognizer's: ``labels``, ``modalities``, ``backends``,
    ``bundles``, ``pipelines``, ``face_heads``; ``url`` is the server.
    """

    remote = True

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        """Reach the server and read what it serves (ServerError when it cannot)."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InputError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.scheme, self.address = parse_url(url)
        self.url = f"{self.scheme}://{self.address}"
        self.timeout = float(timeout)
        try:
            if self.scheme == "http":
                import tritonclient.http as module
            else:
                import tritonclient.grpc as module
        except ImportError as exc:
            raise ServerError(
                f"edge_sdk.connect needs tritonclient: pip install 'edge-sdk[serve]' ({exc})"
            ) from exc
        self._module = module
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            info = self._info()
        except EdgeSDKError:
            self.close()
            raise
        if info.get("protocol") != codec.PROTOCOL:
            self.close()
            raise ServerError(
                f"{self.url} speaks edge-sdk serving protocol {info.get('protocol')!r}; "
                f"this client speaks {codec.PROTOCOL}: use the same edge-sdk version"
            )
        self.info = info
        self.labels = tuple(info["labels"])
        self.modalities = tuple(info["modalities"])
        self.backends = dict(info["backends"])
        self.models = dict(info["models"])
        self.bundles = tuple(
            RemoteBundle(RemoteManifest(b["family"], b["variant"], tuple(b["labels"])))
            for b in info["bundles"]
        )
        self.bundle = self.bundles[0]
        self.pipelines = tuple(
            RemotePipeline(
                modality=p["modality"],
                family=p["family"],
                labels=tuple(p["labels"]),
                stage=p.get("stage"),
                accuracy_task=p.get("accuracy_task"),
                result_fields=tuple(p.get("result_fields") or ()),
                encoder=True if p.get("encoder") else None,
                max_utterances=p.get("max_utterances"),
            )
            for p in info["pipelines"]
        )
        self.face_heads = tuple(p for p in self.pipelines if p.modality == "face")

    # ------------------------------------------------------------------ transport
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self._closed:
                raise ClosedError("this RemoteRecognizer is closed; edge_sdk.connect() again")
            if self.scheme == "http":
                client = self._module.InferenceServerClient(
                    self.address, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            else:
                client = self._module.InferenceServerClient(self.address)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _infer(self, model: str, tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Send one request; the decoded ``result`` JSON, or the typed error."""
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        module = self._module
        inputs = []
        for name, array in tensors.items():
            item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        outputs = [module.InferRequestedOutput(n) for n in (codec.RESULT, codec.ERROR)]
        extra = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        try:
            answer = self._client().infer(model, inputs, outputs=outputs, **extra)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            typed = codec.error_in_message(message, ServerError)
            if typed is not None:
                raise typed from None
            if "UNAVAILABLE" in str(exc.status()):  # gRPC: refused, reset, timed out
                raise ServerError(
                    f"cannot reach the edge-sdk server at {self.url}: {message}"
                ) from exc
            raise ServerError(
                f"{self.url} ({model}): {exc.status() or 'error'}: {message[-1000:]}"
            ) from exc
        except OSError as exc:  # refused, reset, timed out (HTTP client)
            raise ServerError(f"cannot reach the edge-sdk server at {self.url}: {exc}") from exc
        error = _element(answer.as_numpy(codec.ERROR))
        if error:
            raise codec.error_from_payload(error.decode("utf-8", "replace"), ServerError)
        return json.loads(_element(answer.as_numpy(codec.RESULT)))

    def _info(self) -> dict[str, Any]:
        return self._infer(codec.INFO, {codec.REQUEST: _bytes_tensor(b"{}")})

    def close(self) -> None:
        """Close every connection; later calls raise ClosedError. Closing twice is harmless."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()

    def __enter__(self) -> RemoteRecognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        families = ", ".join(b.manifest.family for b in self.bundles)
        return f"RemoteRecognizer({self.url!r}, bundles: {families})"

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        face: Any = None,
        *,
        scene: Any = None,
        audio: Any = None,
        video: Any = None,
        dialog: Any = None,
        color: str = "rgb",
    ) -> Any:
        """Same arguments and results as :meth:`edge_sdk.api.Recognizer.predict`, run on the
        server (module docs)."""
        from edge_sdk.api import Prediction

        given = {"face": face, "scene": scene, "audio": audio, "video": video, "dialog": dialog}
        if all(v is None for v in given.values()):
            raise InputError("predict() needs an input: predict(face=image), scene=, audio=, ...")
        if all(v is None for k, v in given.items() if k != "face"):
            return self._face(face, color)
        started = time.perf_counter()
        results: dict[str, Any] = {}
        timings: dict[str, float] = {}

        def timed(stage: str, fn: Any, *args: Any) -> Any:
            begin = time.perf_counter()
            try:
                return fn(*args)
            finally:
                timings[stage] = (time.perf_counter() - begin) * 1e3

        if face is not None:
            results["face"] = timed("face", self._face, face, color)
        if scene is not None:
            results["scene"] = timed("scene", self._scene, scene, color)
        if audio is not None or video is not None:
            results.update(timed("audio_video", self._audio_video, audio, video, color))
        if dialog is not None:
            results["dialog"] = timed("dialog", self._dialog, dialog)
        timings["total"] = (time.perf_counter() - started) * 1e3
        return Prediction(**results, timings_ms=timings)

    def open_dialog(self) -> Any:
        """Not served: a running dialog lives in one process."""
        raise InputError(
            "open_dialog() keeps the dialog in this process; through a server send the whole "
            "dialog each time: predict(dialog=[...])"
        )

    def _require(self, modality: str) -> str:
        if modality not in self.models:
            families = [b.manifest.family for b in self.bundles]
            raise no_family_for(modality, families, f"served by {self.url}")
        return self.models[modality]

    def _face(self, image: Any, color: str) -> Any:
        from edge_sdk.preprocess.image import to_rgb_uint8

        self._require("face")  # the clear error when no face family is served
        path = None
        if isinstance(image, np.ndarray):
            pixels = to_rgb_uint8(image, color=color)
            model, tensors = codec.FACE_PIXELS, {codec.PIXELS: pixels[None]}
        elif isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.exists():
                raise InputError(f"{path}: no such file")
            if not path.is_file():
                raise InputError(f"{path}: not a regular file")
            model, tensors = codec.FACE, {codec.IMAGE: _bytes_tensor(path.read_bytes())}
        elif isinstance(image, (bytes, bytearray, memoryview)):
            model, tensors = codec.FACE, {codec.IMAGE: _bytes_tensor(bytes(image))}
        else:
            raise InputError(f"unsupported image input of type {type(image).__name__}")
        begin = time.perf_counter()
        try:
            record = self._infer(model, tensors)
        except InputError as exc:
            if path is not None and str(exc).startswith("image bytes"):
                raise type(exc)(str(path) + str(exc)[len("image bytes") :]) from None
            raise
        record["timings_ms"]["roundtrip"] = (time.perf_counter() - begin) * 1e3
        return codec.face_prediction(record)

    def _request(self, modality: str, call: dict[str, Any], media: list[bytes]) -> dict:
        """A request model's answer (``call`` is the JSON, ``media`` its binary parts)."""
        model = self._require(modality)
        tensors = {codec.REQUEST: _bytes_tensor(json.dumps(call).encode())}
        if media:
            parts = np.empty((1, len(media)), dtype=object)
            parts[0, :] = media
            tensors[codec.MEDIA] = parts
        return self._infer(model, tensors)

    def _scene(self, scene: Any, color: str) -> Any:
        from edge_sdk.pipelines.scene import SceneInput

        scene = SceneInput.of(scene)
        self._require("scene")
        writer = codec.MediaWriter()
        call = {
            "scene": {
                "image": writer.image(scene.image, color),
                "head_boxes": _boxes(scene.head_boxes, "head_boxes"),
                "body_boxes": _boxes(scene.body_boxes, "body_boxes"),
            },
            "color": "rgb",  # arrays were made RGB here
        }
        record = self._request("scene", call, writer.blobs)
        return codec.scene_prediction(record["scene"])

    def _audio_video(self, audio: Any, video: Any, color: str) -> dict[str, Any]:
        modality = "audio" if audio is not None else "video"
        self._require(modality)
        writer = codec.MediaWriter()
        call: dict[str, Any] = {"color": "rgb"}
        if audio is not None:
            call["audio"] = writer.audio(audio)
        if video is not None:
            call["video"] = writer.video(video, color)
        record = self._request(modality, call, writer.blobs)
        out = {}
        if "audio" in record:
            out["audio"] = codec.audio_prediction(record["audio"])
        if "video" in record:
            out["video"] = codec.video_prediction(record["video"])
        return out

    def _dialog(self, dialog: Any) -> Any:
        from edge_sdk.pipelines.dialog import to_utterances

        self._require("dialog")
        writer = codec.MediaWriter()
        entries = []
        for u in to_utterances(dialog):
            entries.append(
                {
                    "text": u.text,
                    "speaker": u.speaker,
                    "audio": None if u.audio is None else writer.audio(u.audio),
                    "frames": None if u.frames is None else writer.video(u.frames, "rgb"),
                }
            )
        record = self._request("dialog", {"dialog": entries}, writer.blobs)
        return codec.dialog_prediction(record["dialog"])


def _bytes_tensor(data: bytes) -> np.ndarray:
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = data
    return out


def _element(array: np.ndarray | None) -> bytes:
    """The single bytes element of a BYTES output (b"" when absent)."""
    if array is None or array.size == 0:
        return b""
    item = array.reshape(-1)[0]
    return item if isinstance(item, bytes) else bytes(item)


def _boxes(boxes: Any, name: str) -> list | None:
    """Caller boxes as JSON numbers (the server checks them as a local call would)."""
    if boxes is None:
        return None
    try:
        return np.asarray(boxes, dtype=np.float64).tolist()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not numeric boxes ({exc})") from exc


def connect(url: str, *, timeout: float = 60.0) -> RemoteRecognizer:
    """Connect to an ``edge-sdk serve`` server: ``http://host:8000`` or ``grpc://host:8001``.

    Args:
        url: the server; a bare ``host:port`` means HTTP.
        timeout: seconds to wait for a connection and for each answer.

    Raises:
        ServerError: the server cannot be reached or is not an edge-sdk server.
    """
    return RemoteRecognizer(url, timeout=timeout)


def is_remote(recognizer: Any) -> bool:
    """Whether ``recognizer`` runs its predictions on a server."""
    return isinstance(recognizer, RemoteRecognizer)
