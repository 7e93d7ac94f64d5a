"""Where a data set run's files go and the optimiser sidecar's format (no pickle).

For ``out = ckpt.safetensors`` the loop writes ``ckpt.safetensors`` (best epoch),
``ckpt.last.safetensors`` (last epoch) and, beside each, ``<stem>.optim.safetensors``: the
optimiser's tensors as safetensors, with the optimiser's param groups, its non-tensor state,
and the run's bookkeeping (epoch, history, best figures, the checkpoint's sha256) as JSON
metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_sdk.errors import WeightsError
from edge_sdk.models.training import read_state, training_metadata

STATE_FORMAT = "edge-sdk-train-state/1"


def state_path(checkpoint: str | Path) -> Path:
    """The optimiser sidecar of a checkpoint (``x.safetensors`` -> ``x.optim.safetensors``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.optim.safetensors")


def last_path(out: str | Path) -> Path:
    """The last-epoch checkpoint beside ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.last.safetensors")


def training_provenance(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``"training"`` metadata of a checkpoint, decoded (None when absent)."""
    text = training_metadata(checkpoint)
    return None if text is None else json.loads(text)


def save_state(
    path: Path, family: str, optimiser_state: dict[str, Any], meta: dict[str, Any]
) -> None:
    """Write an optimiser ``state_dict()`` and the run's bookkeeping ``meta`` as a sidecar."""
    from safetensors.torch import save_file

    tensors, scalars = {}, {}
    for index, values in optimiser_state["state"].items():
        for key, value in values.items():
            if hasattr(value, "detach"):
                tensors[f"state/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    metadata = {
        "format": STATE_FORMAT,
        "family": family,
        "param_groups": json.dumps(optimiser_state["param_groups"]),
        "scalars": json.dumps(scalars),
        "run": json.dumps(meta, sort_keys=True),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_state(path: Path, family: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimiser state dict, run meta) from a sidecar.

    Raises:
        WeightsError: not a sidecar of this family's runs, or unreadable.
    """
    metadata, tensors = read_state(path)
    if metadata.get("format") != STATE_FORMAT or metadata.get("family") != family:
        raise WeightsError(f"{path} is not a {family} training state ({STATE_FORMAT})")
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = tensor
    for key, value in json.loads(metadata["scalars"]).items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    groups = json.loads(metadata["param_groups"])
    return {"state": state, "param_groups": groups}, json.loads(metadata["run"])
