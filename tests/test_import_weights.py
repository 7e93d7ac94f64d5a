"""edge-sdk import face-expclip: a real CLIP folder (Hugging Face layout, safetensors) and the
Exp-CLIP head in its released format -> a bundle that predicts what PyTorch computes; wrong
keys, shapes, missing files and pickle-only folders are refused with the name of the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from edge_sdk.errors import InputError, WeightsError
from export.import_weights import import_expclip, load_expclip_head

PROJ, EMBED, SIZE = 24, 16, 32
LABELS = ("calm", "joy", "anger")


def _tokenizer():
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # eos is the last id, as in OpenAI's CLIP
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny CLIPModel saved as a Hugging Face folder (safetensors + tokenizer)."""
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("clip")
    tokenizer = _tokenizer()
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2}  # fmt: skip
    config = CLIPConfig(
        vision_config={**common, "image_size": SIZE, "patch_size": 8},
        text_config={
            **common,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        projection_dim=EMBED,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def head() -> torch.Tensor:
    return torch.randn(PROJ, EMBED, generator=torch.Generator().manual_seed(1))


def _official_pth(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """The authors' format: torch.save of a state dict (DataParallel names)."""
    torch.save(tensors, path)
    return path


def _reference_logits(
    clip_dir: Path, head: torch.Tensor, images: torch.Tensor, labels
) -> np.ndarray:
    """Exp-CLIP's test-time computation with transformers' CLIPModel, independently of us."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(clip_dir)
    prompts = [f"a photo of a face with an expression of {n}." for n in labels]
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=images)
        text = model.get_text_features(**tokens)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    image, text = F.normalize(image @ head.T, dim=-1), F.normalize(text @ head.T, dim=-1)
    return (model.logit_scale.exp() * image @ text.T).detach().numpy()


def test_imported_bundle_predicts_what_pytorch_computes(clip_dir, head, tmp_path, device) -> None:
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.pipelines.face_families import ZeroShotHead

    head_file = _official_pth(tmp_path / "ExpCLIP.pth", {"module.projection_head.mlp.weight": head})
    import_expclip(clip_dir, head_file, tmp_path / "bundle", labels=LABELS)
    bundle = ModelBundle.load(tmp_path / "bundle")  # hashes re-checked on load
    assert bundle.manifest.labels == LABELS
    assert bundle.manifest.provenance["weights_state"] == "pretrained"
    assert {w.name for w in bundle.manifest.weights} >= {"model.safetensors", "ExpCLIP.pth"}
    images = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    got = ZeroShotHead(bundle, device).infer(images.numpy())["logits"]
    want = _reference_logits(clip_dir, head, images, LABELS)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-4)


def test_labels_change_the_output_label_set(clip_dir, head, tmp_path, device) -> None:
    from edge_sdk.pipelines.face_families import ZeroShotHead

    head_file = tmp_path / "head.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": head.contiguous()}, str(head_file))
    default = import_expclip(clip_dir, head_file, tmp_path / "default")
    custom = import_expclip(clip_dir, head_file, tmp_path / "custom", labels=["sleepy", "bored"])
    assert len(default.manifest.labels) == 7 and custom.manifest.labels == ("sleepy", "bored")
    images = np.random.default_rng(4).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    logits = ZeroShotHead(custom, device).infer(images)["logits"]
    assert logits.shape == (2, 2)
    want = _reference_logits(clip_dir, head, torch.from_numpy(images), ("sleepy", "bored"))
    np.testing.assert_allclose(logits, want, atol=1e-3, rtol=1e-4)
    with pytest.raises(InputError, match="repeat"):
        import_expclip(clip_dir, head_file, tmp_path / "dup", labels=["a", "a"])


def test_head_with_a_wrong_key_is_refused_naming_it(tmp_path, head) -> None:
    prefix = "module.projection_head.mlp"
    path = _official_pth(
        tmp_path / "h.pth", {f"{prefix}.weight": head, f"{prefix}.bias": head[:, 0]}
    )
    with pytest.raises(WeightsError, match=r"mlp\.bias"):
        load_expclip_head(path, EMBED)
    path = _official_pth(tmp_path / "g.pth", {"proj.kernel": head})
    with pytest.raises(WeightsError, match=r"proj\.kernel"):
        load_expclip_head(path, EMBED)


def test_head_of_the_wrong_shape_is_refused_naming_the_shapes(tmp_path, head) -> None:
    path = _official_pth(tmp_path / "h.pth", {"mlp.weight": head.T.contiguous()})
    with pytest.raises(WeightsError, match=r"\(16, 24\).*\(4096, 16\)"):
        load_expclip_head(path, EMBED)


def test_legacy_pickle_head_is_refused_without_unpickling(tmp_path, head) -> None:
    import pickle

    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"mlp.weight": head, "x": Boom()}))
    with pytest.raises(WeightsError, match="zip format"):
        load_expclip_head(legacy, EMBED)
    zipped = tmp_path / "evil.pth"
    torch.save({"mlp.weight": head, "x": Boom()}, zipped)
    with pytest.raises(WeightsError, match="weights-only"):
        load_expclip_head(zipped, EMBED)
    assert not marker.exists()


def test_clip_tensor_with_a_wrong_key_or_shape_is_refused(clip_dir, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from edge_sdk.models.clip_towers import load_vision_tower, tower_fields_from_checkpoint
    from edge_sdk.models.face_expclip.family import ExpClipConfig

    state = load_file(str(clip_dir / "model.safetensors"))
    for case, edit, pattern in (
        ("renamed", lambda s: s.__setitem__("vision_model.post_layernorm.gamma",
                                            s.pop("vision_model.post_layernorm.weight")),
         r"vision_model\.post_layernorm\.weight.*vision_model\.post_layernorm\.gamma"),
        ("reshaped", lambda s: s.__setitem__("visual_projection.weight",
                                             torch.zeros(EMBED, 31)),
         r"visual_projection\.weight: file \(16, 31\) vs model \(16, 32\)"),
    ):  # fmt: skip
        folder = tmp_path / case
        shutil.copytree(clip_dir, folder)
        broken = dict(state)
        edit(broken)
        save_file(broken, str(folder / "model.safetensors"), metadata={"format": "pt"})
        config = ExpClipConfig(**tower_fields_from_checkpoint(folder))
        with pytest.raises(WeightsError, match=pattern):
            load_vision_tower(config)


def test_missing_config_and_pickle_only_folders_are_refused(clip_dir, head, tmp_path) -> None:
    head_file = _official_pth(tmp_path / "h.pth", {"mlp.weight": head})
    no_config = tmp_path / "no_config"
    shutil.copytree(clip_dir, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(WeightsError, match="config.json"):
        import_expclip(no_config, head_file, tmp_path / "out1")
    pickled = tmp_path / "pickled"
    shutil.copytree(clip_dir, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin.*[Cc]onvert"):
        import_expclip(pickled, head_file, tmp_path / "out2")
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(clip_dir, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match="tokenizer"):
        import_expclip(no_tokenizer, head_file, tmp_path / "out3")
    broken = tmp_path / "broken"
    shutil.copytree(clip_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    del config["vision_config"]["patch_size"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="patch_size"):
        import_expclip(broken, head_file, tmp_path / "out4")
    assert not any((tmp_path / f"out{i}").exists() for i in (1, 2, 3, 4))


def test_import_command_writes_the_bundle_with_labels_and_refuses_a_wrong_head(
    clip_dir, head, tmp_path
) -> None:
    from typer.testing import CliRunner

    from edge_sdk.bundle import ModelBundle
    from edge_sdk.cli import app

    head_file = _official_pth(tmp_path / "ExpCLIP.pth", {"module.projection_head.mlp.weight": head})
    out = tmp_path / "bundle"
    args = ["import", "face-expclip", "--clip", str(clip_dir), "--head", str(head_file)]
    done = CliRunner().invoke(app, [*args, "--out", str(out), "--labels", "calm, joy"])
    assert done.exit_code == 0, done.output
    assert ModelBundle.load(out).manifest.labels == ("calm", "joy")
    assert "labels: calm, joy" in done.output
    wrong = _official_pth(tmp_path / "bad.pth", {"module.projection_head.mlp.bias": head[:, 0]})
    refused = CliRunner().invoke(
        app, ["import", "face-expclip", "--clip", str(clip_dir), "--head", str(wrong),
              "--out", str(tmp_path / "other")],
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "bias" in refused.output and "Traceback" not in refused.output
