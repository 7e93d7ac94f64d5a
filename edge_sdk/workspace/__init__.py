"""CocoER's workspace (spec section 1, step 7): competition and coordination at inference time.

Interface for the scene pipeline
--------------------------------
The two exported graphs of ``scene-cocoer`` give, per person (batch row)::

    levels:    z_c, z_b, z_h (B, d)   hidden outputs of g_θm = the inputs of θ_l^m
               level_logits (B, 3, k) z_m θ_l^mᵀ, before F (optional: compared with the
                                      workspace's own when ``logits_atol`` is set)
    alignment: y_t (B, k)             the pseudo label, after F
               z_t (B, d)             accepted and ignored (no fusion head is trained)

Pass them, as one mapping of numpy arrays, to :meth:`Workspace.update`::

    workspace = Workspace.from_bundle("bundles/scene")  # in-process, backend torch or numpy
    # out of process, same call and result (this process needs no torch):
    #   workspace = ManagedSidecar(SidecarProcess(bundle="bundles/scene")).start()
    #   workspace = SidecarClient("/run/ws.sock")  # a server run by `edge-sdk sidecar`
    result = workspace.update({**levels_outputs, **alignment_outputs})
    result.probabilities          # (B, k) final prediction: mean of the refined levels
    result.level_probabilities    # (B, 3, k) F(z_m θ̃_mᵀ), levels in c, b, h order
    result.initial_probabilities  # (B, 3, k) F(z_m θ_mᵀ), before the workspace
    result.losses                 # (B, 3) f_m = L(F(g_θm(z_m)), y_t)
    result.removed                # (B, 2) level indices in the order competition removed them
    result.kept                   # (B,) the level left in Z
    result.lambdas                # (B, 2, 3) λ of each round (0 for levels no longer in Z)
    result.delta                  # (B, k, d) accumulated δ_l (before η)
    result.removed_names(0), result.kept_name(0), result.label(0)

Every row is independent (its own competition and its own θ̃); the workspace is stateless: the
inference-time update never changes the stored θ_l, so calls do not influence each other and
several threads may share one workspace. Bad input raises :class:`~edge_sdk.errors.InputError`.

What is computed (the spec, made concrete)
------------------------------------------
θ_l^m is the bias-free prediction layer of level m, stored like torch's ``nn.Linear.weight``:
shape (k, d), logits s_m = θ_l^m z_m. Its flattening (row-major over (k, d)) is the d·k axis of
G; any fixed flattening gives the same G Gᵀ and δ.

* Level loss f_m = L(s_m, y_t): soft-target cross-entropy -Σ_j y_tj log softmax(s_m)_j (softmax
  families) or the mean over the k classes of the binary cross-entropy with logits (sigmoid,
  multi-label), i.e. the same L as the training loss
  (:func:`edge_sdk.models.scene_cocoer.family.level_loss`) for one sample.
* Gradients: G_m = ∇_{θ_l^m} f_m, obtained by autograd in the torch backend (the reference,
  no formula assumed) and analytically in the numpy backend: G_m = e_m z_mᵀ with
  e_m = ∂f_m/∂s_m = p_m Σ_j y_tj - y_t (softmax; = p_m - y_t when y_t sums to one) or
  (sigmoid(s_m) - y_t) / k (sigmoid). Then (G Gᵀ)_ij = (e_i·e_j)(z_i·z_j) needs no (k, d) products.
* Competition: Z = all levels. While |Z| > 1: λ = argmin ½ λᵀ G_Z G_Zᵀ λ - λᵀ f_Z on the simplex
  (:func:`solve_simplex_qp`), δ = -G_Zᵀ λ, δ_l += δ, remove n = argmax_{m in Z} f_m (ties: the
  first level in c, b, h order). The spec applies δ_l only in coordination, so f and G are
  those of the original θ_l in every round; a round only drops rows. Hence δ_l = -Gᵀ Σ_r λ_r.
* Coordination: θ̃_l^m = θ_l^m + η δ_l for every level (η from the bundle, default 1.0);
  refined level prediction F(θ̃_l^m z_m). Only θ_l changes and it is the last layer of g, so the
  hidden output ẑ_m of g_θ̃ equals z_m: predictions change only through θ_l. Final prediction:
  the mean of the refined level predictions (the spec's default; no fusion head is trained,
  which is why z_t is unused).

Numerics: everything is float64 (inputs are cast), so the torch and numpy backends agree to
rounding (~1e-12) and the QP is solved far below the 1e-6 the tests demand.

torch is imported only by the torch backend, so a process without torch can use the numpy
backend or talk to the sidecar process (:mod:`edge_sdk.sidecar`).

Layout: :mod:`~edge_sdk.workspace.core` (the Workspace: settings, persistence, input checks),
:mod:`~edge_sdk.workspace.backends` (torch and numpy updates), :mod:`~edge_sdk.workspace.qp`
(the simplex QP and the competition), :mod:`~edge_sdk.workspace.losses` (numpy L and F),
:mod:`~edge_sdk.workspace.result` (WorkspaceResult) and :mod:`~edge_sdk.workspace.names`.
Everything public is importable from ``edge_sdk.workspace``.
"""

from edge_sdk.workspace.core import BACKENDS, WEIGHTS_FORMAT, Workspace
from edge_sdk.workspace.losses import activate, level_losses, loss_gradients
from edge_sdk.workspace.names import (
    FAMILY,
    IGNORED_OUTPUTS,
    LEVEL_LOGITS,
    LEVEL_OUTPUTS,
    LEVELS,
    PSEUDO_LABEL,
)
from edge_sdk.workspace.qp import DEFAULT_RIDGE, compete, qp_objective, solve_simplex_qp
from edge_sdk.workspace.result import RESULT_ARRAYS, WorkspaceResult

__all__ = [
    "BACKENDS",
    "DEFAULT_RIDGE",
    "FAMILY",
    "IGNORED_OUTPUTS",
    "LEVELS",
    "LEVEL_LOGITS",
    "LEVEL_OUTPUTS",
    "PSEUDO_LABEL",
    "RESULT_ARRAYS",
    "WEIGHTS_FORMAT",
    "Workspace",
    "WorkspaceResult",
    "activate",
    "compete",
    "level_losses",
    "loss_gradients",
    "qp_objective",
    "solve_simplex_qp",
]
