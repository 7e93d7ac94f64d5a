"""Import what the papers released: a CLIP checkpoint + the official Exp-CLIP projection head
-> a verified ``face-expclip`` bundle (``edge-sdk import face-expclip``).

Inputs, read without unpickling anything:

* ``clip_dir``: a Hugging Face CLIP folder (``config.json``, ``model.safetensors`` or a sharded
  index, tokenizer files), checked and loaded tensor by tensor by
  :mod:`edge_sdk.models.clip_towers` (pickle-only folders are refused with a request to
  convert them).
* ``head_file``: Exp-CLIP's projection head P_θ, one bias-free ``nn.Linear(D, 4096)`` weight
  (D = 512 for ViT-B, 768 for ViT-L) of shape (4096, D). The authors' release stores it in a
  PyTorch state dict under a name ending in ``mlp.weight`` (their test script copies the entry
  whose name contains ``mlp.weight`` into ``projection_head.mlp.weight``). Accepted: a
  ``.safetensors`` file, or a ``.pth``/``.pt`` state dict in PyTorch's zip format, whose
  archive layout is checked before ``torch.load(weights_only=True)`` reads it (the legacy
  non-zip pickle format is refused). The file must hold exactly that one tensor.

The bundle is written by :func:`export.family_export.write_bundle` (ONNX export, parity against
PyTorch, manifest), with ``weights_state = "pretrained"`` and both sources' sha256 in the
manifest. The logits are scaled by the checkpoint's exp(logit_scale), as the authors' test
script does. ``labels`` replaces the vocabulary: the class prototypes P_θ(e_P(prompt_k)) are
recomputed with the checkpoint's text tower, so a user's own class names need no training.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from edge_sdk.bundle import ModelBundle, sha256_file
from edge_sdk.errors import InputError, WeightsError
from edge_sdk.manifest import WeightSource

if TYPE_CHECKING:
    import torch

HEAD_KEY_SUFFIX = "mlp.weight"  # projection_head.mlp.weight in the authors' model
HEAD_OUTPUT_DIM = 4096  # the paper's LLM embedding width (a tiny test head may differ)
_TORCH_ZIP_RECORDS = {"data.pkl", "version", "byteorder", ".format_version", ".storage_alignment"}


def load_expclip_head(head_file: str | Path, clip_embed_dim: int) -> torch.Tensor:
    """The (P, clip_embed_dim) projection matrix from an official-format head file.

    Raises WeightsError naming the file and the problem: unknown suffix, unreadable or
    non-zip ``.pth``, a key that is not the head's (``...mlp.weight``), more than one tensor
    (a bias, or a whole model), or a shape other than (P, clip_embed_dim).
    """
    path = Path(head_file)
    if not path.is_file():
        raise WeightsError(f"Exp-CLIP head file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state = _read_safetensors(path)
    elif suffix in (".pth", ".pt"):
        state = _read_torch_zip(path)
    else:
        raise WeightsError(
            f"{path}: unknown head format {suffix!r}; give the .safetensors file or the "
            "released .pth/.pt state dict"
        )
    keys = sorted(state)
    if len(keys) != 1 or not (keys[0] == "weight" or keys[0].endswith(HEAD_KEY_SUFFIX)):
        raise WeightsError(
            f"{path} must hold exactly one tensor, the head's '{HEAD_KEY_SUFFIX}' (or 'weight') "
            f"of a bias-free Linear; found keys {keys[:8]}"
        )
    weight = state[keys[0]]
    if weight.ndim != 2 or weight.shape[1] != clip_embed_dim or weight.shape[0] < 1:
        raise WeightsError(
            f"{path}: {keys[0]} has shape {tuple(weight.shape)}; the CLIP checkpoint's "
            f"{clip_embed_dim}-d embeddings need (out, {clip_embed_dim}), out = "
            f"{HEAD_OUTPUT_DIM} in the released heads, e.g. ({HEAD_OUTPUT_DIM}, {clip_embed_dim})"
        )
    if not weight.dtype.is_floating_point:
        raise WeightsError(f"{path}: {keys[0]} is {weight.dtype}, not a floating-point matrix")
    return weight.float().contiguous()


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc


def _check_torch_zip(path: Path) -> None:
    """PyTorch's zip checkpoint layout: one top folder with data.pkl and data/<n> records."""
    if not zipfile.is_zipfile(path):
        raise WeightsError(
            f"{path} is not in PyTorch's zip format (legacy pickle checkpoints are refused): "
            "re-save it with torch.save(state_dict, path) on a trusted machine, or convert it "
            "to safetensors"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(f"{path} is a damaged zip archive: {exc}") from exc
    roots = {PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts}
    bad = [
        n
        for n in names
        if n.startswith("/")
        or ".." in PurePosixPath(n).parts
        or "\\" in n
        or len(PurePosixPath(n).parts) < 2
    ]
    if bad or len(roots) != 1:
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint archive (entries {bad or names[:5]})"
        )
    root = roots.pop()
    rest = [PurePosixPath(n).relative_to(root) for n in names]
    if PurePosixPath("data.pkl") not in rest:
        raise WeightsError(f"{path} is not a PyTorch checkpoint archive (no {root}/data.pkl)")
    for member in rest:
        top = member.parts[0]
        if len(member.parts) == 1 and top in _TORCH_ZIP_RECORDS:
            continue
        if top == "data" and len(member.parts) == 2 and member.parts[1].isdigit():
            continue
        if top == ".data" and len(member.parts) == 2:  # serialization_id, version
            continue
        raise WeightsError(f"{path}: unexpected archive entry {root}/{member}")


def _read_torch_zip(path: Path) -> dict:
    import pickle

    import torch

    _check_torch_zip(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a weights-only state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path} is not a state dict of named tensors")
    return state


def _logit_scale(folder: Path) -> float:
    """exp(logit_scale) of the checkpoint, the authors' test-time multiplier (100 for OpenAI's
    CLIP); the default 100 when the checkpoint has no ``logit_scale`` tensor."""
    import math

    from edge_sdk.models.clip_towers import read_checkpoint_tensors

    found = read_checkpoint_tensors(folder, ("logit_scale",)).get("logit_scale")
    if found is None:
        return 100.0
    if found.numel() != 1 or not math.isfinite(float(found)):
        raise WeightsError(f"{folder}: logit_scale is not one finite number")
    return float(math.exp(float(found)))


def _labels(labels: Sequence[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if labels is None:
        return default
    names = tuple(str(n).strip() for n in labels)
    if not names or any(not n for n in names):
        raise InputError(f"labels must be non-empty class names; got {list(labels)!r}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"labels repeat {duplicated}")
    return names


def import_expclip(
    clip_dir: str | Path,
    head_file: str | Path,
    out_dir: str | Path,
    labels: Sequence[str] | None = None,
) -> ModelBundle:
    """Write a ``face-expclip`` bundle from a CLIP checkpoint folder and the Exp-CLIP head.

    Args:
        clip_dir: Hugging Face CLIP folder (config.json, model.safetensors, tokenizer files).
        head_file: the released projection head (.safetensors, or a zip-format .pth/.pt).
        out_dir: bundle folder to write.
        labels: class names in output order (default RAF-DB's 7); their prompts'
            prototypes are computed with the checkpoint's text tower.

    Returns:
        The written, verified bundle.
    """
    import torch

    from edge_sdk.models.clip_towers import checkpoint_weight_files, tower_fields_from_checkpoint
    from edge_sdk.models.face_expclip.family import (
        FAMILY,
        ExpClipConfig,
        ExpClipModel,
        export_build,
    )
    from export.family_export import write_bundle

    folder = Path(clip_dir)
    weight_files = checkpoint_weight_files(folder)
    fields = tower_fields_from_checkpoint(folder)
    head = load_expclip_head(head_file, fields["clip_embed_dim"])
    config = ExpClipConfig(
        **fields,
        proj_dim=int(head.shape[0]),
        vocabulary=_labels(labels, ExpClipConfig().vocabulary),
        logit_scale=_logit_scale(folder),
    )
    model = ExpClipModel(config)
    with torch.no_grad():
        model.projection.weight.copy_(head)
    build = export_build(model.eval(), config)
    head_path = Path(head_file)
    head_source = WeightSource(
        name=head_path.name,
        license="user-supplied (Exp-CLIP release; check its terms)",
        attribution="Exp-CLIP projection head (Zhao et al.)",
        origin=str(head_path),
        sha256=sha256_file(head_path),
    )
    build = dataclasses.replace(
        build,
        variant="exp-clip-imported",
        weights=(*build.weights, head_source),
        weights_state="pretrained",
    )
    provenance = {
        "import": "exp-clip",
        "clip_checkpoint_sha256": ",".join(sha256_file(f) for f in weight_files),
        "head_sha256": head_source.sha256,
    }
    return write_bundle(FAMILY, build, Path(out_dir), provenance=provenance)
