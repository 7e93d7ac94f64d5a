"""What the scene pipeline answers for a CocoER training model, under each workspace setting
validation tries (the trainer keeps the best one with the weights, see
:class:`edge_sdk.models.families.DatasetTraining`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from edge_sdk.preprocess.windows import WINDOW_NAMES


def cocoer_predict(model: Any, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """(n, k) what the scene pipeline reports per person: both graphs, then the workspace
    (torch backend, the reference a Recognizer runs with torch installed) on their outputs."""
    return cocoer_predict_settings(model, batch, [model.config])[0]


def cocoer_predict_settings(
    model: Any, batch: dict[str, torch.Tensor], configs: list[Any]
) -> list[np.ndarray]:
    """:func:`cocoer_predict` under each config's workspace settings, the graphs run once."""
    from edge_sdk.workspace import Workspace

    with torch.no_grad():
        z_c, z_b, z_h, level_logits = model.levels(batch["context"], batch["body"], batch["head"])
        y_t, z_t = model.alignment(batch["image"])
    outputs = {"z_c": z_c, "z_b": z_b, "z_h": z_h, "level_logits": level_logits,
               "y_t": y_t, "z_t": z_t}  # fmt: skip
    outputs = {k: v.detach().cpu().numpy() for k, v in outputs.items()}
    theta = {m: model.levels.heads[m].predict.weight.detach().cpu().numpy() for m in WINDOW_NAMES}
    answers = []
    for config in configs:
        workspace = Workspace(
            theta, multi_label=config.multi_label, eta=config.workspace_eta,
            labels=config.vocabulary, backend="torch",
        )  # fmt: skip
        answers.append(np.asarray(workspace.update(outputs).probabilities, dtype=np.float64))
    return answers


# Workspace step sizes validation tries, the specification's 1.0 first (it wins ties). The
# coordination step grows with |z_m|^2: on small trained models η = 1 overturned correct level
# predictions (levels 100% right, final 0% on a generated CAER-S set; η = 0.1: 100%), so the
# trainer measures instead of assuming. 0 = the mean of the levels, no coordination.
WORKSPACE_ETAS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.0)


def cocoer_deploy_settings(config: Any) -> dict[str, Any]:
    """The workspace step sizes each validation scores (:data:`WORKSPACE_ETAS`)."""
    return {f"workspace_eta={eta:g}": dataclasses.replace(config, workspace_eta=eta)
            for eta in WORKSPACE_ETAS}  # fmt: skip
