"""Per-family INT8 policy: which graphs to quantise, how, and how to judge each output.

Measured (tiny configs trained on generated data; ORT 1.32 on the 2-core CPU; QDQ,
per-channel symmetric INT8; default gate thresholds). Sweep: 500 calibration samples, 400
held-out generated samples, methods x op sets {Conv, Conv+Gemm, Conv+MatMul+Gemm,
MatMul+Gemm} x node exclusions {attention score MatMuls, last linear layer}. Check: the
product path, ``calibrate_bundle(method="auto", count=1000, holdout=0.4)``.

- face-caf (FP32 CCC v/a 0.965/0.979): every method and op set passes; CCC delta 0.0003
  (minmax, percentile) vs 0.0011 (entropy), worst feature cosine >= 0.9947. minmax.
- av-fbp (FP32 accuracy: audio_video 0.943, audio_only 0.470): audio_video passes
  everything (agreement >= 0.9975, 1.0 with minmax on all ops; max prob diff 0.04 minmax or
  percentile, 0.08-0.10 entropy), FBP power/L2 path included. audio_only's raw agreement
  is 0.85-0.99 for every variant while its INT8 accuracy stays 0.46-0.47: 70% of its
  samples have a top-2 margin < 0.05 (the head is confident on classes 0-1 and near-uniform
  over 2-6) and every flip had an FP32 margin < 0.02. minmax.
- scene-cocoer (FP32 level accuracy 0.82-0.86, y_t 0.41): raw level agreement 0.985-0.995,
  every flip with FP32 margin < 0.05 (agreement 1.0 above it); entropy with Conv breaks
  embeddings (worst cosine 0.87-0.96). Check: percentile level agreement 1.0, worst
  cosine 0.9944, minmax 0.9991 / 0.9924; but percentile (any histogram) cannot bin the
  attention softmax of the untrained edge config (every weight within 2e-6 of 1/49) and
  stops. minmax, all ops.
- dialog-m2fnet (FP32 utterance accuracy 1.0): on real utterances agreement is 1.0 for every
  variant; all flips were on padded utterances (``utterance_mask`` 0), hence the mask.
  entropy with Gemm breaks the visual encoder (worst cosine 0.51-0.66); minmax >= 0.995.
  The edge text encoder (pretrained MiniLM, untrained rest; 300 held-out utterances): with
  every MatMul INT8 the worst cosine is 0.63 minmax / 0.65 percentile / 0.83 entropy;
  keeping the 6 FFN output projections FP32 gives 0.979 / 0.981, keeping also the 12
  attention score products 0.990 / 0.990 (entropy 0.86), and the product path 0.9907 with
  minmax. Those nodes stay FP32 (``exclude_nodes``). minmax.
- face-expclip: logits are 100 x cosine to prototypes that are 0.90-0.99 alike; the
  top-2 cosine gap is 0.028 (median, 10th percentile 0.006). The FP32 model itself is that
  sensitive: 1% Gaussian noise on the image gives worst embedding cosine 0.998, 3% fails the
  gate (agreement 0.987-0.990). All MatMuls INT8 flipped 5-7% (agreement 0.91-0.95, max
  prob diff 0.36-0.52, worst cosine 0.972-0.979). Causes, measured (seeds 0/1, 700
  calibration, 800 held-out): no channel outliers (max/median channel range 1.2-1.5, 2.3
  after post_layernorm), so SmoothQuant scaling (alpha 0.5, 0.75) changed nothing or made
  it worse (0.91-0.95). Instead (i) QDQ on op outputs: the logits output itself was INT8
  (step 0.41 logit; max prob diff 0.52 from that node alone); (ii) the class token is 98%
  image-independent (its image-dependent part is 1.7-2.6% of its energy), so per-tensor
  steps at post_layernorm / visual_projection cover the offset: quantising only those two
  MatMuls gave 0.981-0.987, folding the two bias-free projections into one 0.989-0.991,
  folding and centring the LayerNorm outputs on their mean 1.0 (max prob diff 0.03-0.07);
  (iii) the MLPs (fc1 and fc2, either layer: 0.978-0.990 even after centring; a per-token
  shift did not fix them) and the patch Conv (input step alone costs ~1.6% image noise).
  Kept: fold + centre (:mod:`calibration.rewrites`), no QDQ on op outputs, Conv and MLPs
  FP32; INT8 are q/k/v, the attention products, out_proj, the fused projection and the
  prototype product. 800 held-out, seeds 0/1/2: agreement 0.992/0.993/0.997 minmax,
  0.994/0.996/0.997 percentile; max prob diff 0.10-0.13; worst cosine >= 0.9977. With QDQ
  on outputs the same set fails (0.95-0.98). Product path, seeds 0/1/2: agreement
  0.996-0.997, max prob diff 0.08-0.12, worst cosine >= 0.9987. minmax (percentile can fail to
  bin a near-uniform attention softmax, as in scene-cocoer).
- face-fer7 (40 variants of the example photo calibrate, 200 others gate): R-Net fails on
  max prob diff with every method (0.27-0.46 over 22,147 candidate crops, agreement
  0.986-0.994); P-Net too (0.57-0.71); O-Net and the classifier pass every method
  (classifier agreement 1.0, max prob diff 0.025 minmax / 0.054 percentile / 0.23 entropy).
  In the full pipeline over the 200 variants, INT8 P-Net alone changed the face count of
  2-3 images (R-Net alone, percentile: none). P-Net and R-Net stay FP32. minmax.
- Elsewhere, node-level exclusions (attention score MatMuls, last linear layer) changed
  nothing beyond the near-tie flips above, so none are applied; softmax, normalisation,
  Pow/Sqrt/Div are never quantised (only the op types listed are).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import Manifest

QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
METHODS = ("minmax", "entropy", "percentile")
# FP32 decisions closer than this (top-2 probability margin, |2p - 1| for a score) are left
# out of the gate's agreement; every INT8 flip measured in av-fbp, scene-cocoer and
# dialog-m2fnet was below it.
TIE_MARGIN = 0.05


@dataclass(frozen=True)
class FamilyPolicy:
    """How one family is calibrated.

    Attributes:
        method: default calibration method (``auto`` tries every method).
        skip_graphs: graphs kept FP32 (no INT8 artifact is written for them).
        op_types: op types given INT8 inputs; everything else stays FP32.
        kinds: graph -> output -> kind for the accuracy gate, as the bundle's manifest
            declares them (filled in by :func:`policy_for`).
        exclude_nodes: graph -> ``fnmatch`` patterns of node names kept FP32 although their
            op type is quantised.
        masks: graph -> output -> input whose zero entries mark padded rows of that output
            (left out of the gate: their values mean nothing in FP32 either).
        tie_margin: FP32 decisions closer than this are "undecided" for the gate's agreement.
        center_activations: rewrite each graph exactly before calibrating (fold chained
            MatMuls, centre LayerNorm outputs on their calibration mean; see
            :mod:`calibration.rewrites`), for tensors that are mostly a constant offset.
        quantize_outputs: False quantises only the inputs of the quantised ops, not their
            outputs (TensorRT's recommended placement; keeps INT8 off graph outputs).
    """

    method: str
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    skip_graphs: tuple[str, ...] = ()
    op_types: tuple[str, ...] = QUANTISED_OPS
    exclude_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    tie_margin: float = TIE_MARGIN
    center_activations: bool = False
    quantize_outputs: bool = True
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


_STATIC: dict[str, FamilyPolicy] = {
    "face-fer7": FamilyPolicy(method="minmax", skip_graphs=("pnet", "rnet")),
    "face-caf": FamilyPolicy(method="minmax"),
    "face-expclip": FamilyPolicy(
        method="minmax",
        # The patch-embedding Conv and the MLPs stay FP32 (see the module docstring).
        op_types=("MatMul", "Gemm"),
        exclude_nodes={"zero_shot": ("*/mlp/fc1/MatMul", "*/mlp/fc2/MatMul")},
        center_activations=True,
        quantize_outputs=False,
    ),
    "av-fbp": FamilyPolicy(method="minmax"),
    "scene-cocoer": FamilyPolicy(method="minmax"),
    "dialog-m2fnet": FamilyPolicy(
        method="minmax",
        # BERT layers: the FFN output projection (input = GELU of the 4x-wide layer) and
        # the attention score products; patterns fit the tiny BERT and MiniLM alike.
        exclude_nodes={
            "text_encoder": (
                "/bert/encoder/layer.*[0-9]/output/dense/MatMul",
                "/bert/encoder/layer.*/attention/self/MatMul*",
            )
        },
        masks={"dialog": {"logits": "utterance_mask"}},
    ),
}


def policy_for(manifest: Manifest) -> FamilyPolicy:
    """The family's policy, with the output kinds the bundle's manifest declares."""
    if manifest.family not in _STATIC:
        raise EdgeSDKError(
            f"no INT8 policy for family {manifest.family!r}; known: {sorted(_STATIC)}"
        )
    policy = replace(
        _STATIC[manifest.family], kinds={g.name: g.output_kinds() for g in manifest.graphs}
    )
    for graph in manifest.graphs:
        outputs = {t.name for t in graph.outputs}
        inputs = {t.name for t in graph.inputs}
        for output, mask in policy.masks.get(graph.name, {}).items():
            if output not in outputs or mask not in inputs:
                raise EdgeSDKError(
                    f"INT8 policy of {manifest.family} masks {graph.name}.{output} by "
                    f"{mask!r}; outputs {sorted(outputs)}, inputs {sorted(inputs)}"
                )
    return policy
