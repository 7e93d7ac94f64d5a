"""The Workspace: θ_l^m of the level heads, its settings, persistence and input checks.

Why a module of its own: this is the object users and the sidecar hold. It validates θ_l and
every input before any numerics run, loads θ_l from a bundle or a ``Workspace.save`` file,
fingerprints it, and hands the checked arrays to a backend (:mod:`edge_sdk.workspace.backends`).
It is stateless after construction: θ_l is read-only, so threads may share one workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import BundleError, InputError
from edge_sdk.workspace.backends import import_torch, update_numpy, update_torch
from edge_sdk.workspace.losses import activate
from edge_sdk.workspace.names import FAMILY, LEVEL_LOGITS, LEVEL_OUTPUTS, LEVELS, PSEUDO_LABEL
from edge_sdk.workspace.qp import DEFAULT_RIDGE
from edge_sdk.workspace.result import WorkspaceResult

BACKENDS = ("torch", "numpy")
WEIGHTS_FORMAT = "edge-sdk-workspace/1"


class Workspace:
    """Competition + coordination over the level heads' prediction layers θ_l^m.

    Args:
        theta: level name -> θ_l^m, shape (k, d) (torch's ``Linear.weight`` layout), for
            every name in ``levels``.
        multi_label: F = sigmoid with mean BCE (EMOTIC) instead of softmax with cross-entropy.
        eta: η, the coordination step size.
        labels: class names (k), or None.
        levels: level names in the graph's order (default context, body, head); the input
            keys are ``z_<first letter>``.
        backend: ``"torch"`` (autograd reference) or ``"numpy"`` (analytic form).
        logits_atol: when set and ``level_logits`` is among the inputs, they must equal
            z_m θ_mᵀ within this absolute tolerance: a check that the engine and the workspace
            hold the same θ_l (use a looser value for FP16/INT8 engines). None: not checked.
        ridge: see :func:`solve_simplex_qp`.
    """

    def __init__(
        self,
        theta: Mapping[str, Any],
        *,
        multi_label: bool,
        eta: float = 1.0,
        labels: Sequence[str] | None = None,
        levels: Sequence[str] = LEVELS,
        backend: str = "torch",
        logits_atol: float | None = None,
        ridge: float = DEFAULT_RIDGE,
    ) -> None:
        self.levels = tuple(levels)
        if len(self.levels) < 2 or len(set(self.levels)) != len(self.levels):
            raise InputError(f"the workspace needs at least two distinct levels: {self.levels}")
        self.inputs = tuple(f"z_{name[:1]}" for name in self.levels)
        if len(set(self.inputs)) != len(self.inputs):
            raise InputError(f"level names {self.levels} give clashing inputs {self.inputs}")
        missing = [m for m in self.levels if m not in theta]
        if missing:
            raise InputError(f"theta lacks the levels {missing}")
        stacked = [np.asarray(theta[m], dtype=np.float64) for m in self.levels]
        shapes = {w.shape for w in stacked}
        if len(shapes) != 1 or len(stacked[0].shape) != 2 or 0 in stacked[0].shape:
            raise InputError(f"every θ_l^m must be one (k, d) matrix; got {sorted(shapes)}")
        self.theta = np.ascontiguousarray(np.stack(stacked))  # (L, k, d)
        self.theta.setflags(write=False)
        if not np.isfinite(self.theta).all():
            raise InputError("θ_l contains NaN or Inf")
        self.classes, self.width = self.theta.shape[1:]
        self.multi_label = bool(multi_label)
        self.eta = float(eta)
        if not np.isfinite(self.eta):
            raise InputError(f"eta must be finite, got {eta!r}")
        self.labels = tuple(labels) if labels else None
        if self.labels is not None and len(self.labels) != self.classes:
            raise InputError(f"{len(self.labels)} labels for k = {self.classes} classes")
        if backend not in BACKENDS:
            raise InputError(f"unknown workspace backend {backend!r}; choose from {BACKENDS}")
        self._theta_torch = None
        if backend == "torch":
            self._theta_torch = import_torch().tensor(self.theta)  # a private, writable copy
        self.backend = backend
        self.logits_atol = logits_atol
        self.ridge = float(ridge)

    # ---------------------------------------------------------------------------------- build
    @classmethod
    def from_bundle(cls, bundle: Any, **options: Any) -> Workspace:
        """The workspace of a ``scene-cocoer`` bundle (a ModelBundle or its directory).

        θ_l^m come from the ``levels`` graph's safetensors (``heads.<level>.predict.weight``),
        hash-checked at read time; η, the activation and the labels from the manifest.
        ``options`` go to the constructor (backend, logits_atol, ridge).
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load

        from edge_sdk.bundle import ModelBundle

        if not isinstance(bundle, ModelBundle):
            bundle = ModelBundle.load(bundle)
        manifest = bundle.manifest
        if manifest.family != FAMILY:
            raise BundleError(f"a workspace needs a {FAMILY} bundle, not {manifest.family}")
        settings = manifest.config.get("workspace", {})
        if list(settings.get("levels", LEVEL_OUTPUTS)) != list(LEVEL_OUTPUTS):
            raise BundleError(
                f"bundle workspace levels {settings.get('levels')} are not {list(LEVEL_OUTPUTS)}"
            )
        activation = manifest.config.get("activation")
        if activation not in ("softmax", "sigmoid"):
            raise BundleError(f"bundle activation {activation!r} is not softmax or sigmoid")
        artifacts = [a for a in manifest.artifacts_for("levels") if a.format == "safetensors"]
        if not artifacts:
            raise BundleError("the bundle has no safetensors weights for the levels graph")
        try:
            state = load(bundle.read_artifact(artifacts[0]))
        except SafetensorError as exc:
            raise BundleError(f"unreadable levels weights: {exc}") from exc
        theta = {}
        for level in LEVELS:
            key = f"heads.{level}.predict.weight"
            if key not in state:
                raise BundleError(f"levels weights lack {key}")
            theta[level] = state[key]
        return cls(
            theta,
            multi_label=activation == "sigmoid",
            eta=float(settings.get("eta", 1.0)),
            labels=manifest.labels,
            **options,
        )

    def config(self) -> dict[str, Any]:
        """JSON-able settings (everything but θ_l)."""
        return {
            "levels": list(self.levels),
            "labels": list(self.labels) if self.labels else None,
            "multi_label": self.multi_label,
            "eta": self.eta,
            "ridge": self.ridge,
            "logits_atol": self.logits_atol,
        }

    def fingerprint(self) -> str:
        """sha256 of θ_l (float64, little-endian) and the settings that change results."""
        digest = hashlib.sha256(self.theta.astype("<f8").tobytes())
        settings = {k: v for k, v in self.config().items() if k != "logits_atol"}
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()

    def info(self) -> dict[str, Any]:
        """Settings, sizes, backend and fingerprint (what the sidecar reports)."""
        return {
            **self.config(),
            "classes": int(self.classes),
            "width": int(self.width),
            "backend": self.backend,
            "fingerprint": self.fingerprint(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write θ_l and the settings to one safetensors file (read back by :meth:`load`)."""
        from safetensors.numpy import save_file

        target = Path(path)
        tensors = {
            f"theta.{m}": np.ascontiguousarray(w)
            for m, w in zip(self.levels, self.theta, strict=True)
        }
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(self.config())}
        save_file(tensors, str(target), metadata=metadata)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> Workspace:
        """A workspace written by :meth:`save`; ``options`` override backend, logits_atol."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except (OSError, SafetensorError) as exc:
            raise InputError(f"cannot read workspace weights {path}: {exc}") from exc
        if metadata.get("format") != WEIGHTS_FORMAT:
            raise InputError(f"{path} is not a workspace weights file ({WEIGHTS_FORMAT})")
        try:
            config = json.loads(metadata["config"])
            levels = tuple(config["levels"])
            theta = {m: tensors[f"theta.{m}"] for m in levels}
            settings = {
                "multi_label": bool(config["multi_label"]),
                "eta": float(config["eta"]),
                "labels": config.get("labels"),
                "levels": levels,
                "ridge": float(config.get("ridge", DEFAULT_RIDGE)),
                "logits_atol": config.get("logits_atol"),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed workspace weights file {path}: {exc!r}") from exc
        return cls(theta, **{**settings, **options})

    # --------------------------------------------------------------------------------- update
    def _inputs(self, outputs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Validated z (B, L, d) and y_t (B, k) in float64."""
        if not isinstance(outputs, Mapping):
            raise InputError(f"workspace input must be a mapping of arrays, not {type(outputs)}")
        needed = [*self.inputs, PSEUDO_LABEL]
        missing = [n for n in needed if n not in outputs]
        if missing:
            raise InputError(f"workspace input lacks {missing} (needs {needed})")
        arrays = {}
        for name in needed:
            value = np.asarray(outputs[name])
            if value.dtype.kind not in "fiu":
                raise InputError(f"{name} must be numeric, got dtype {value.dtype}")
            arrays[name] = value.astype(np.float64)
        y_t = arrays[PSEUDO_LABEL]
        if y_t.ndim != 2 or y_t.shape[1] != self.classes or y_t.shape[0] == 0:
            raise InputError(f"y_t must be (B >= 1, k={self.classes}), got {y_t.shape}")
        batch = y_t.shape[0]
        for name in self.inputs:
            if arrays[name].shape != (batch, self.width):
                raise InputError(
                    f"{name} must be (B={batch}, d={self.width}), got {arrays[name].shape}"
                )
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise InputError(f"{name} contains NaN or Inf")
        if y_t.min() < -1e-6 or y_t.max() > 1.0 + 1e-6:
            raise InputError("y_t must hold probabilities in [0, 1] (F applied)")
        z = np.stack([arrays[name] for name in self.inputs], axis=1)
        return z, np.clip(y_t, 0.0, 1.0)

    def _check_logits(self, outputs: Mapping[str, Any], logits: np.ndarray) -> None:
        if self.logits_atol is None or LEVEL_LOGITS not in outputs:
            return
        given = np.asarray(outputs[LEVEL_LOGITS], dtype=np.float64)
        if given.shape != logits.shape:
            raise InputError(f"level_logits must be {logits.shape}, got {given.shape}")
        worst = float(np.abs(given - logits).max())
        if not worst <= self.logits_atol:
            raise InputError(
                f"level_logits differ from z_m θ_mᵀ by {worst:.3g} (> {self.logits_atol:g}): "
                "the engine and the workspace do not hold the same θ_l"
            )

    def update(self, outputs: Mapping[str, Any]) -> WorkspaceResult:
        """Competition + coordination for every row of the exported graphs' outputs.

        Args:
            outputs: ``z_c``, ``z_b``, ``z_h`` (B, d) and ``y_t`` (B, k); optionally
                ``level_logits`` (B, L, k) (checked when ``logits_atol`` is set) and ``z_t``
                (ignored). Other keys are ignored, so the graphs' output dicts can be merged.

        Returns:
            The final and per-level predictions with the competition's details.
        """
        z, y_t = self._inputs(outputs)
        if self.backend == "torch":
            parts = update_torch(self._theta_torch, z, y_t, **self._numerics())
        else:
            parts = update_numpy(self.theta, z, y_t, **self._numerics())
        logits, losses, lambdas, removed, kept, delta, refined = parts
        self._check_logits(outputs, logits)
        level_probabilities = activate(refined, self.multi_label)
        return WorkspaceResult(
            probabilities=level_probabilities.mean(axis=1),
            level_probabilities=level_probabilities,
            initial_probabilities=activate(logits, self.multi_label),
            losses=losses,
            removed=removed,
            kept=kept,
            lambdas=lambdas,
            delta=delta,
            levels=self.levels,
            labels=self.labels,
        )

    def _numerics(self) -> dict[str, Any]:
        """The settings a backend's update needs besides θ_l and the inputs."""
        return {"multi_label": self.multi_label, "eta": self.eta, "ridge": self.ridge}
