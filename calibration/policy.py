"""Per-family INT8 policy: which graphs to quantise, how, and how to judge each output.

MEASUREMENTS_PLACEHOLDER
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import Manifest

QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
METHODS = ("minmax", "entropy", "percentile")
# FP32 decisions closer than this (top-2 probability margin, |2p - 1| for a score) are left
# out of the gate's agreement; every measured flip outside face-expclip was below it.
TIE_MARGIN = 0.05


@dataclass(frozen=True)
class FamilyPolicy:
    """How one family is calibrated.

    Attributes:
        method: default calibration method (``auto`` tries every method).
        skip_graphs: graphs kept FP32 (no INT8 artifact is written for them).
        op_types: op types given INT8 inputs; everything else stays FP32.
        kinds: graph -> output -> kind for the accuracy gate.
        masks: graph -> output -> input whose zero entries mark padded rows of that output
            (left out of the gate: their values mean nothing in FP32 either).
        tie_margin: FP32 decisions closer than this are "undecided" for the gate's agreement.
    """

    method: str
    kinds: dict[str, dict[str, str]]
    skip_graphs: tuple[str, ...] = ()
    op_types: tuple[str, ...] = QUANTISED_OPS
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    tie_margin: float = TIE_MARGIN
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _cocoer_kinds(manifest: Manifest) -> dict[str, dict[str, str]]:
    multi = bool(manifest.config.get("model", {}).get("multi_label", False))
    return {
        "levels": {
            "z_c": "embedding",
            "z_b": "embedding",
            "z_h": "embedding",
            "level_logits": "multilabel_logits" if multi else "logits",
        },
        "alignment": {"y_t": "binary" if multi else "probabilities", "z_t": "embedding"},
    }


_DETECTOR = {"prob": "binary", "offsets": "regression"}

_STATIC: dict[str, FamilyPolicy] = {
    "face-fer7": FamilyPolicy(
        method="minmax",
        skip_graphs=("pnet",),
        kinds={
            "pnet": dict(_DETECTOR),
            "rnet": dict(_DETECTOR),
            "onet": {**_DETECTOR, "landmarks": "regression"},
            "classifier": {"probabilities": "probabilities"},
        },
    ),
    "face-caf": FamilyPolicy(
        method="minmax",
        kinds={"regressor": {"valence_arousal": "regression", "features": "embedding"}},
    ),
    "face-expclip": FamilyPolicy(
        method="percentile",
        op_types=("Conv",),
        kinds={"zero_shot": {"logits": "logits", "embedding": "embedding"}},
    ),
    "av-fbp": FamilyPolicy(
        method="minmax",
        kinds={"audio_video": {"logits": "logits"}, "audio_only": {"logits": "logits"}},
    ),
    "dialog-m2fnet": FamilyPolicy(
        method="minmax",
        kinds={
            "text_encoder": {"embeddings": "embedding"},
            "audio_encoder": {"audio_features": "embedding"},
            "visual_encoder": {"visual_features": "embedding"},
            "dialog": {"logits": "logits"},
        },
        masks={"dialog": {"logits": "utterance_mask"}},
    ),
}


def policy_for(manifest: Manifest) -> FamilyPolicy:
    """The family's policy; its kinds must name every output of every graph."""
    if manifest.family == "scene-cocoer":
        policy = FamilyPolicy(method="minmax", kinds=_cocoer_kinds(manifest))
    elif manifest.family in _STATIC:
        policy = _STATIC[manifest.family]
    else:
        raise EdgeSDKError(
            f"no INT8 policy for family {manifest.family!r}; known: "
            f"{sorted([*_STATIC, 'scene-cocoer'])}"
        )
    for graph in manifest.graphs:
        declared = set(policy.kinds.get(graph.name, {}))
        outputs = {t.name for t in graph.outputs}
        if declared != outputs:
            raise EdgeSDKError(
                f"INT8 policy of {manifest.family} declares outputs {sorted(declared)} for "
                f"graph {graph.name!r}, which has {sorted(outputs)}"
            )
        inputs = {t.name for t in graph.inputs}
        for output, mask in policy.masks.get(graph.name, {}).items():
            if output not in outputs or mask not in inputs:
                raise EdgeSDKError(
                    f"INT8 policy of {manifest.family} masks {graph.name}.{output} by "
                    f"{mask!r}; outputs {sorted(outputs)}, inputs {sorted(inputs)}"
                )
    return policy
