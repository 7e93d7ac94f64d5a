"""CLIP image/text towers shared by the Exp-CLIP and CocoER families.

The towers are transformers' ``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection``
(never hand-written). No CLIP weights ship with edge-sdk, so a family config either

* names a local checkpoint directory (``clip_checkpoint``, user-supplied, in the Hugging Face
  layout: ``config.json``, ``model.safetensors``, tokenizer files) loaded with
  ``from_pretrained(dir, local_files_only=True, use_safetensors=True)``, or
* leaves it empty, and the towers are built at random from the config's flat architecture
  fields (``clip_*`` for the image tower, ``text_*`` for the text tower) with a tiny
  character-level tokenizer, which is what the tests and the untrained ``edge`` size use.

Checkpoint folders are read strictly and without pickle (:func:`checkpoint_weight_files`):
``config.json`` must be there, weights only from ``model.safetensors`` (or its sharded index),
a folder with only ``pytorch_model.bin``-style files is refused with a request to convert it,
and every tower tensor is matched by name and shape (:func:`load_tower_state`) instead of
``from_pretrained``, which would silently re-initialise a missing tensor.

Exported graphs are rebuilt on the device from the flat fields alone (their weights come from
the bundle's safetensors), so when a checkpoint is given the fields must describe it:
:func:`tower_fields_from_checkpoint` reads them from the checkpoint's ``config.json`` and
:func:`check_tower_fields` refuses a mismatch instead of failing later at ``load_state_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from edge_sdk.errors import WeightsError
from edge_sdk.manifest import Preprocessing, WeightSource

# OpenAI CLIP's image normalisation (what every CLIP checkpoint was trained with).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Character-level stand-in tokenizer: pad, bos, the characters, then eos as the LAST id, so
# both pooling rules of transformers' CLIP text model (argmax of ids, or first eos) agree.
_CHARS = " abcdefghijklmnopqrstuvwxyz0123456789.,'-/&()!?:;"
_PAD, _BOS = "<pad>", "<bos>"
_EOS = "<eos>"
CHAR_VOCAB_SIZE = len(_CHARS) + 3


class TowerFields(Protocol):
    """The flat config fields a family config carries to describe its CLIP towers."""

    clip_checkpoint: str
    clip_hidden: int
    clip_layers: int
    clip_heads: int
    clip_mlp: int
    clip_image_size: int
    clip_patch: int
    clip_embed_dim: int
    clip_act: str
    text_hidden: int
    text_layers: int
    text_heads: int
    text_mlp: int
    text_vocab: int
    text_max_len: int


def clip_preprocessing(size: int) -> Preprocessing:
    """RGB crop resized to ``size`` and normalised with CLIP's mean/std (NCHW)."""
    return Preprocessing(
        size=(size, size),
        color="rgb",
        scale=1.0 / 255.0,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        interpolation="cubic",
        layout="NCHW",
    )


def vision_config(fields: TowerFields) -> Any:
    """``CLIPVisionConfig`` from the flat fields (eager attention: exports cleanly)."""
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig(
        hidden_size=fields.clip_hidden,
        intermediate_size=fields.clip_mlp,
        projection_dim=fields.clip_embed_dim,
        num_hidden_layers=fields.clip_layers,
        num_attention_heads=fields.clip_heads,
        image_size=fields.clip_image_size,
        patch_size=fields.clip_patch,
        hidden_act=fields.clip_act,
        num_channels=3,
    )
    config._attn_implementation = "eager"
    return config


def text_config(fields: TowerFields) -> Any:
    """``CLIPTextConfig`` from the flat fields, with the stand-in tokenizer's special ids."""
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(
        vocab_size=fields.text_vocab,
        hidden_size=fields.text_hidden,
        intermediate_size=fields.text_mlp,
        projection_dim=fields.clip_embed_dim,
        num_hidden_layers=fields.text_layers,
        num_attention_heads=fields.text_heads,
        max_position_embeddings=fields.text_max_len,
        hidden_act=fields.clip_act,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=fields.text_vocab - 1,
    )
    config._attn_implementation = "eager"
    return config


def build_vision_tower(fields: TowerFields) -> nn.Module:
    """A randomly initialised image tower of the fields' shape (weights loaded later)."""
    from transformers import CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(vision_config(fields)).eval()


def _checkpoint_dir(fields: TowerFields) -> Path:
    path = Path(fields.clip_checkpoint)
    if not path.is_dir():
        raise WeightsError(f"CLIP checkpoint directory {path} does not exist")
    return path


SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
# weight files that need unpickling (or another framework) to read: never opened here
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")
VISION_PREFIXES = ("vision_model.", "visual_projection.")
TOKENIZER_BPE_FILES = ("vocab.json", "merges.txt")
TEXT_PREFIXES = ("text_model.", "text_projection.")
# buffers old transformers versions saved and current ones rebuild (not weights)
_REBUILT_BUFFERS = ("embeddings.position_ids",)


def checkpoint_weight_files(local_dir: str | Path) -> tuple[Path, ...]:
    """The safetensors files of a Hugging Face checkpoint folder, checked; no pickle.

    Raises WeightsError naming the missing file: ``config.json``; ``model.safetensors`` (or
    ``model.safetensors.index.json`` and the shards it names, which must lie in the folder);
    a folder that holds only pickle-format weights (``pytorch_model.bin`` ...) is refused with
    the conversion to run on a trusted machine, since unpickling can execute code.
    """
    folder = Path(local_dir)
    if not folder.is_dir():
        raise WeightsError(f"CLIP checkpoint directory {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{folder} has no config.json (expected a CLIP checkpoint folder)")
    single, index = folder / SAFETENSORS_WEIGHTS, folder / SAFETENSORS_INDEX
    if single.is_file():
        return (single,)
    if index.is_file():
        return _shards(folder, index)
    pickled = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise WeightsError(
            f"{folder} holds only pickle-format weights ({', '.join(pickled)}); edge-sdk never "
            "unpickles checkpoints. Convert them to safetensors on a trusted machine, e.g. "
            'python -c "from transformers import CLIPModel; CLIPModel.from_pretrained('
            "'IN').save_pretrained('OUT', safe_serialization=True)\", and copy the tokenizer files"
        )
    raise WeightsError(f"{folder} has no {SAFETENSORS_WEIGHTS} (nor {SAFETENSORS_INDEX})")


def _shards(folder: Path, index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{index} is not a safetensors index (weight_map): {exc}") from exc
    shards = []
    for name in names:
        if (
            not isinstance(name, str)
            or Path(name).name != name
            or not name.endswith(".safetensors")
        ):
            raise WeightsError(
                f"{index} names a shard outside the folder or not safetensors: {name!r}"
            )
        if not (folder / name).is_file():
            raise WeightsError(f"{index} names shard {name}, which is missing from {folder}")
        shards.append(folder / name)
    return tuple(shards)


def read_checkpoint_tensors(
    local_dir: str | Path, prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Tensors whose names start with ``prefixes`` (only those are read from disk)."""
    from safetensors import SafetensorError, safe_open

    state: dict[str, torch.Tensor] = {}
    for file in checkpoint_weight_files(local_dir):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                    if key.startswith(prefixes) and not key.endswith(_REBUILT_BUFFERS):
                        state[key] = handle.get_tensor(key)
        except (OSError, SafetensorError) as exc:
            raise WeightsError(f"{file} is not a readable safetensors file: {exc}") from exc
    return state


def load_tower_state(
    tower: nn.Module, state: dict[str, torch.Tensor], prefixes: tuple[str, ...], where: str
) -> None:
    """Copy ``state`` into ``tower`` after checking every name and shape (strict, typed).

    Raises WeightsError naming the first problems: a tower tensor missing from the file, a
    tensor of the tower's prefixes the tower does not have (a wrong key), or a shape that
    differs (with both shapes). Half-precision files are widened to the tower's dtype.
    """
    expected = tower.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if k.startswith(prefixes))
    if missing or unexpected:
        raise WeightsError(
            f"{where} does not fit the CLIP tower: missing tensors {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise WeightsError(f"{where} has tensors of the wrong shape: {'; '.join(wrong[:5])}")
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(state[key].to(value.dtype))


def load_vision_tower(fields: TowerFields) -> nn.Module:
    """Image tower: from ``clip_checkpoint`` when set (strictly checked), else random."""
    tower = build_vision_tower(fields)
    if fields.clip_checkpoint:
        check_tower_fields(fields)
        state = read_checkpoint_tensors(fields.clip_checkpoint, VISION_PREFIXES)
        load_tower_state(tower, state, VISION_PREFIXES, fields.clip_checkpoint)
    return tower.eval()


def load_text_tower(fields: TowerFields) -> nn.Module:
    """Text tower: from ``clip_checkpoint`` when set (strictly checked), else random."""
    from transformers import CLIPTextModelWithProjection

    tower = CLIPTextModelWithProjection(text_config(fields))
    if fields.clip_checkpoint:
        check_tower_fields(fields)
        state = read_checkpoint_tensors(fields.clip_checkpoint, TEXT_PREFIXES)
        load_tower_state(tower, state, TEXT_PREFIXES, fields.clip_checkpoint)
    return tower.eval()


def tower_fields_from_checkpoint(local_dir: str | Path) -> dict[str, Any]:
    """The flat ``clip_*``/``text_*`` field values describing a local CLIP checkpoint.

    Use with ``dataclasses.replace(config, **fields)`` to point a family config at a
    user-supplied checkpoint.
    """
    path = Path(local_dir) / "config.json"
    if not path.is_file():
        raise WeightsError(f"{local_dir} has no config.json (expected a CLIP checkpoint folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _fields_from_config(data, str(local_dir))
    except (ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path} is not a CLIP config: {exc}") from exc
    except KeyError as exc:
        raise WeightsError(f"{path} lacks the CLIP setting {exc}") from exc


def _fields_from_config(data: dict[str, Any], local_dir: str) -> dict[str, Any]:
    """The flat fields from a parsed CLIP ``config.json`` (KeyError names a missing one)."""
    vision = data.get("vision_config", data)
    text = data.get("text_config", {})
    fields = {
        "clip_checkpoint": str(local_dir),
        "clip_hidden": int(vision["hidden_size"]),
        "clip_layers": int(vision["num_hidden_layers"]),
        "clip_heads": int(vision["num_attention_heads"]),
        "clip_mlp": int(vision["intermediate_size"]),
        "clip_image_size": int(vision["image_size"]),
        "clip_patch": int(vision["patch_size"]),
        "clip_embed_dim": int(data.get("projection_dim", vision.get("projection_dim", 512))),
        "clip_act": str(vision.get("hidden_act", "quick_gelu")),
    }
    if text:
        fields.update(
            text_hidden=int(text["hidden_size"]),
            text_layers=int(text["num_hidden_layers"]),
            text_heads=int(text["num_attention_heads"]),
            text_mlp=int(text["intermediate_size"]),
            text_vocab=int(text["vocab_size"]),
            text_max_len=int(text["max_position_embeddings"]),
        )
    # settings the flat fields do not carry: the rebuilt graphs use these values
    for name, part in (("vision_config", vision), ("text_config", text)):
        eps = float(part.get("layer_norm_eps", 1e-5))
        if eps != 1e-5:
            raise WeightsError(f"{local_dir}: {name}.layer_norm_eps {eps} is not CLIP's 1e-05")
    if text and str(text.get("hidden_act", fields["clip_act"])) != fields["clip_act"]:
        raise WeightsError(f"{local_dir}: the text and image towers use different activations")
    return fields


def check_tower_fields(fields: TowerFields) -> None:
    """Raise WeightsError when the config's tower fields do not describe its checkpoint."""
    found = tower_fields_from_checkpoint(fields.clip_checkpoint)
    wrong = {k: (getattr(fields, k), v) for k, v in found.items() if getattr(fields, k) != v}
    if wrong:
        raise WeightsError(
            f"config does not match CLIP checkpoint {fields.clip_checkpoint} (config, checkpoint): "
            f"{wrong}; use tower_fields_from_checkpoint() to fill the fields"
        )


def clip_weight_sources(fields: TowerFields) -> tuple[WeightSource, ...]:
    """Provenance of the CLIP weights: the user's checkpoint files, or none when random."""
    if not fields.clip_checkpoint:
        return ()
    from edge_sdk.bundle import sha256_file

    return tuple(
        WeightSource(
            name=file.name,
            license="user-supplied",
            attribution="user CLIP checkpoint",
            origin=str(file),
            sha256=sha256_file(file),
        )
        for file in sorted(_checkpoint_dir(fields).glob("*.safetensors"))
    )


def char_tokenizer(max_len: int) -> Any:
    """Tiny local character-level tokenizer (``tokenizers`` BPE without merges).

    Stand-in for CLIP's BPE tokenizer when no checkpoint is given: it needs no file, and any
    English vocabulary maps to distinct ids. Sequences are ``<bos> chars <eos>``, truncated to
    ``max_len`` (the text tower's positions) and padded with ``<pad>`` to the batch's longest.
    """
    from tokenizers import Tokenizer, models, normalizers, processors

    vocab = {_PAD: 0, _BOS: 1, **{c: i + 2 for i, c in enumerate(_CHARS)}, _EOS: len(_CHARS) + 2}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{_BOS} $A {_EOS}",
        special_tokens=[(_BOS, vocab[_BOS]), (_EOS, vocab[_EOS])],
    )
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.enable_padding(pad_id=0, pad_token=_PAD)
    return tokenizer


@dataclass(frozen=True)
class PromptTokenizer:
    """Prompts -> (input_ids, attention_mask) with CLIP's tokenizer or the stand-in."""

    backend: Any
    max_len: int
    is_fast_hf: bool

    @classmethod
    def for_fields(cls, fields: TowerFields) -> PromptTokenizer:
        """The checkpoint's tokenizer if ``clip_checkpoint`` is set, else the stand-in."""
        if not fields.clip_checkpoint:
            return cls(char_tokenizer(fields.text_max_len), fields.text_max_len, False)
        from transformers import AutoTokenizer

        folder = _checkpoint_dir(fields)
        has_fast = (folder / "tokenizer.json").is_file()
        if not has_fast and not all((folder / f).is_file() for f in TOKENIZER_BPE_FILES):
            raise WeightsError(
                f"{folder} has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)"
            )
        try:
            backend = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder}: the tokenizer files cannot be read: {exc}") from exc
        # the rebuilt text tower pools at the first eos = id text_vocab - 1 (CLIP's layout)
        if backend.eos_token_id != fields.text_vocab - 1:
            raise WeightsError(
                f"{folder}: tokenizer eos id {backend.eos_token_id} is not the last id of the "
                f"text tower's vocabulary ({fields.text_vocab - 1})"
            )
        return cls(backend, fields.text_max_len, True)

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_fast_hf:
            out = self.backend(
                prompts,
                padding=True,
                truncation=True,
                max_length=self.max_len,
                return_tensors="pt",
            )
            return out["input_ids"], out["attention_mask"]
        encodings = self.backend.encode_batch(prompts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask


def encode_prompts(
    text_tower: nn.Module, tokenizer: PromptTokenizer, prompts: list[str]
) -> torch.Tensor:
    """(k, clip_embed_dim) projected text embeddings e_P of the prompts (no gradient)."""
    ids, mask = tokenizer(prompts)
    with torch.no_grad():
        return text_tower(input_ids=ids, attention_mask=mask).text_embeds


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into a pretrained tower and keep it in eval mode (no dropout)."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()
