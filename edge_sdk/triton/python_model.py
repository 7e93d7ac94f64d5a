"""Triton Python-backend model: edge_sdk's own pipeline, run in-process, bytes in, JSON out.

``edge-sdk export-triton`` copies this file unchanged to ``<family>_pipeline/1/model.py``
next to a hash-checked copy of the bundle (``1/bundle/``, and ``1/detector/`` when the
family borrows the face detector of another bundle). Triton's Python backend imports it
in its stub process; :class:`PipelineRunner` holds everything that is not Triton's, so it
is also importable (and tested) without a server.

Each request carries a 1-D BYTES tensor (encoded images, or WAV files for the audio
family) and gets back one JSON text per item, the ``to_dict()`` of what
``edge_sdk.load(bundle).predict(...)`` returns, which is what ``edge-sdk predict --json``
prints. An item the SDK refuses (a corrupt image, an empty payload) fails its request
with the SDK's message; the model keeps serving the others.

Triton's Python needs edge-sdk installed (``pip install edge-sdk`` in the container, or a
packed environment named by the ``EXECUTION_ENV_PATH`` parameter); without it the model
fails to load with a message that says so. Its NumPy must be the major version the
backend's stub was built against: the stub of Triton 2.51 (24.10, the one the
``nvidia-pytriton`` 0.7.0 wheel ships) is built for NumPy 1.x, and under NumPy 2 every
tensor it passes is corrupted (the BYTES length prefix arrives as its low byte repeated,
and the stub aborts), so that release needs ``numpy<2`` in that Python.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# config.pbtxt parameters written by edge_sdk.triton.repository (the same names there).
MODALITY = "edge_sdk.modality"
BUNDLE_DIGEST = "edge_sdk.bundle_digest"
DETECTOR_DIGEST = "edge_sdk.detector_digest"
BUNDLE_DIR = "bundle"
DETECTOR_DIR = "detector"
MAX_ITEMS = 64  # items in one request: bounds the work a single request can queue


class PipelineRunner:
    """Opens the copied bundle(s) with their digests pinned and runs one payload at a time.

    Args:
        version_dir: the model's version folder (``<model>/1``).
        parameters: the ``edge_sdk.*`` parameters of config.pbtxt.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from edge_sdk.api import load
        from edge_sdk.bundle import ModelBundle

        self.modality = parameters[MODALITY]
        bundle = ModelBundle.load(version_dir / BUNDLE_DIR, digest=parameters[BUNDLE_DIGEST])
        detector = None
        if DETECTOR_DIGEST in parameters:
            detector = ModelBundle.load(
                version_dir / DETECTOR_DIR, digest=parameters[DETECTOR_DIGEST]
            )
        # One worker: Triton runs one execute() per instance at a time; scale with instances.
        self.recognizer = load(bundle, detector=detector, workers=1)

    def run(self, payload: bytes) -> str:
        """The JSON result for one encoded payload; EdgeSDKError when it cannot be used."""
        result = self.recognizer.predict(**{self.modality: payload})
        return json.dumps(result.to_dict())

    def close(self) -> None:
        """Stop the Recognizer's workers (and any sidecar it started)."""
        self.recognizer.close()


def _pb_utils() -> Any:
    """Triton's helper module, present only inside the Python backend's stub process."""
    import triton_python_backend_utils

    return triton_python_backend_utils


class TritonPythonModel:
    """The class Triton's Python backend instantiates (its required name)."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the pipeline once per model instance."""
        config = json.loads(args["model_config"])
        parameters = {
            key: value.get("string_value", "")
            for key, value in config.get("parameters", {}).items()
        }
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        try:
            import edge_sdk  # noqa: F401 - only to say clearly what is missing
        except ImportError as exc:
            raise RuntimeError(
                f"model {args.get('model_name')}: edge_sdk is not importable in Triton's "
                "Python; install it there (pip install edge-sdk) or point the "
                "EXECUTION_ENV_PATH parameter at a packed environment that has it"
            ) from exc
        self.runner = PipelineRunner(version_dir, parameters)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: a JSON text per item, or the SDK's error."""
        import numpy as np

        from edge_sdk.errors import EdgeSDKError, InputError

        pb = _pb_utils()
        responses = []
        for request in requests:
            try:
                items = pb.get_input_tensor_by_name(request, self.input_name).as_numpy()
                items = items.reshape(-1)
                if len(items) > MAX_ITEMS:
                    raise InputError(f"{len(items)} items in one request; at most {MAX_ITEMS}")
                texts = [self.runner.run(bytes(item)).encode("utf-8") for item in items]
                out = pb.Tensor(self.output_name, np.array(texts, dtype=np.object_))
                responses.append(pb.InferenceResponse(output_tensors=[out]))
            except EdgeSDKError as exc:
                message = f"{type(exc).__name__}: {exc}"
                responses.append(pb.InferenceResponse(error=pb.TritonError(message)))
        return responses

    def finalize(self) -> None:
        """Release the pipeline when Triton unloads the model."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.close()
