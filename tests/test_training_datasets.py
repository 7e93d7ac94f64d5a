"""Training on data sets in their published layouts (edge_sdk.training), end to end.

Each face family trains on a small data set written here with a learnable signal, is
exported with the exporter the CLI uses, and ``check accuracy``'s library function on the
bundle, over the same held-out split, must give the trainer's last validation figure.

Face images are drawn: an ellipse "face" with eyes and, for face-fer7, a smiling or a
frowning mouth (grey, which is all the FER2013 classifier sees); for face-caf the face's red
and green levels encode valence and arousal. The tiny Exp-CLIP model has random CLIP towers,
which (unlike a pretrained CLIP) do not agree on images and prompts; its data set therefore
uses images its tiny towers already match with their class prompts (what pretraining gives
real faces), and teacher embeddings near the class prototypes, as an LLM's descriptions of
such faces would be.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_sdk.checks.accuracy import check_accuracy
from edge_sdk.datasets import read_dataset
from edge_sdk.errors import DeviceError, InputError, WeightsError
from edge_sdk.models.training import read_state, write_state
from edge_sdk.training import (
    TRAINING_METADATA_KEY,
    UnreadableSampleError,
    in_validation,
    load_teachers,
    parse_source,
    sample_id,
    split_dataset,
    state_path,
    train_on_data,
    training_provenance,
)

# The test machine's cores are shared: one torch thread is faster than two contended.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

SEED = 3
VA = ("valence", "arousal")



def _face(rng: np.random.Generator, size: int, skin, mouth: str | None = None) -> np.ndarray:
    """RGB uint8 face-like drawing: jittered ellipse, two eyes, optional smile/frown."""
    image = rng.integers(0, 50, (size, size, 3)).astype(np.float32)
    cx, cy = size // 2 + rng.integers(-2, 3, 2)
    tone = np.asarray(skin, dtype=np.float32) * rng.uniform(0.9, 1.1)
    cv2.ellipse(image, (int(cx), int(cy)), (int(size * 0.32), int(size * 0.4)), 0, 0, 360,
                tone.tolist(), -1)  # fmt: skip
    for dx in (-1, 1):
        eye = (int(cx + dx * size * 0.13), int(cy - size * 0.1))
        cv2.circle(image, eye, max(1, size // 16), (20, 20, 20), -1)
    if mouth is not None:
        smile = mouth == "happy"
        centre = (int(cx), int(cy + size * (0.12 if smile else 0.26)))
        arc = (0, 180) if smile else (180, 360)
        cv2.ellipse(image, centre, (int(size * 0.17), int(size * 0.1)), 0, *arc, (30, 10, 10),
                    max(1, size // 20))  # fmt: skip
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------- layouts
def _folder_set(root: Path, per_class: int, size: int = 64) -> Path:
    """<root>/happy/*.png smiling, <root>/sad/*.png frowning."""
    rng = np.random.default_rng(0)
    for mouth in ("happy", "sad"):
        for i in range(per_class):
            _write_rgb(root / mouth / f"{i:03d}.png", _face(rng, size, (190, 160, 140), mouth))
    return root


def _affectnet_set(root: Path, count: int, size: int = 40) -> Path:
    """AffectNet's training.csv + Manually_Annotated_Images/<dir>/<file>; box inside the image.

    Valence and arousal set the face's red and green levels.
    """
    rng = np.random.default_rng(1)
    rows = ["subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
            "expression,valence,arousal"]  # fmt: skip
    for i in range(count):
        v, a = rng.uniform(-0.9, 0.9, 2)
        canvas = rng.integers(0, 50, (size + 8, size + 8, 3)).astype(np.uint8)
        canvas[4 : 4 + size, 4 : 4 + size] = _face(rng, size, (128 + 120 * v, 128 + 120 * a, 90))
        name = f"{i % 3}/{i:04d}.png"
        _write_rgb(root / "Manually_Annotated_Images" / name, canvas)
        rows.append(f'{name},4,4,{size},{size},"",0,{v:.4f},{a:.4f}')
    csv = root / "training.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


def _caf_config(size: int = 32):
    from edge_sdk.models.face_caf.family import TINY

    return dataclasses.replace(TINY, image_size=size, stage_channels=(16, 16, 32))


# --------------------------------------------------------------------------- face-fer7
def test_fer7_fine_tunes_from_fer_weights_to_90_percent_and_exports_a_verified_bundle(
    tmp_path: Path, device
) -> None:
    from edge_sdk.checks.verify import verify
    from edge_sdk.models.face_fer7.family import FER_LABELS, init_classifier
    from edge_sdk.models.families import get_family
    from edge_sdk.training import evaluate
    from export.family_export import export_family

    root = _folder_set(tmp_path / "faces", per_class=40)
    published, config = init_classifier("fer")
    held_out = split_dataset(read_dataset(root, "folder", labels=FER_LABELS), 0.25, SEED)[1]
    before = evaluate(published, get_family("face-fer7").fine_tune, config, held_out)
    assert before.war < 0.9  # the drawings are not FER2013 faces: fine-tuning is needed
    epochs: list = []
    result = train_on_data(
        "face-fer7", tmp_path / "fer7.safetensors", f"folder:{root}", val_split=0.25,
        epochs=3, batch_size=16, lr=2e-3, seed=SEED, on_epoch=epochs.append,
    )  # fmt: skip
    assert [e.epoch for e in epochs] == [1, 2, 3]
    best = result.provenance["best"]
    assert best["war"] >= 0.9, result.history  # chance is 0.5 (two classes)
    assert result.provenance["init_from"] == "fer" and result.provenance["samples"]["val"] >= 10
    bundle = export_family("face-fer7", tmp_path / "bundle", checkpoint=result.checkpoint)
    assert bundle.manifest.variant == "custom"
    assert verify(bundle, device, sizes=("opt",)).passed
    val = split_dataset(read_dataset(root, "folder"), 0.25, SEED)[1]
    checked = check_accuracy(bundle, val, faces="given")
    trained = training_provenance(result.checkpoint)
    assert checked.samples == trained["samples"]["val"]
    assert checked.metrics.war == pytest.approx(best["war"], abs=0.005)
    # the bundle carries the training record: data set, counts, epochs, validation figures
    assert json.loads(bundle.manifest.provenance["training"]) == trained
    assert bundle.manifest.provenance["weights_state"] == "trained"


# --------------------------------------------------------------------------- face-caf
@pytest.fixture(scope="module")
def caf_csv(tmp_path_factory) -> Path:
    return _affectnet_set(tmp_path_factory.mktemp("affectnet"), count=96)


def test_caf_learns_valence_arousal_from_affectnet_layout_and_bundle_scores_the_same(
    tmp_path: Path, caf_csv: Path
) -> None:
    from export.family_export import export_family

    result = train_on_data(
        "face-caf", tmp_path / "caf.safetensors", f"affectnet:{caf_csv}", val_split=0.25,
        config=_caf_config(), epochs=12, batch_size=16, lr=3e-3, seed=SEED,
    )  # fmt: skip
    last = result.history[-1].figures
    assert last["ccc_mean"] > 0.6, result.history  # chance: CCC 0
    bundle = export_family("face-caf", tmp_path / "bundle", checkpoint=result.last)
    val = split_dataset(read_dataset(caf_csv, "affectnet", labels=VA), 0.25, SEED)[1]
    checked = check_accuracy(bundle, val, faces="given")
    assert checked.samples == len(val) == result.provenance["samples"]["val"]
    assert float(np.mean(checked.metrics.ccc)) == pytest.approx(last["ccc_mean"], abs=0.005)
    assert float(np.mean(checked.metrics.rmse)) == pytest.approx(last["rmse_mean"], abs=0.005)


# --------------------------------------------------------------------------- face-expclip
EXPCLIP_CLASSES = (0, 3, 4)  # RAF-DB surprise, happiness, sadness


def _agreeing_faces(model, config, steps: int = 40) -> np.ndarray:
    """(3, S, S, 3) uint8 images the tiny towers place nearest their class prompt."""
    from torch.nn import functional as F  # noqa: N812

    from edge_sdk.models.clip_towers import encode_prompts
    from edge_sdk.models.face_expclip.family import face_preprocessing, prompts_for

    prep = face_preprocessing(config)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    prompts = prompts_for(config, config.vocabulary)
    text = F.normalize(encode_prompts(model.text_tower, model.tokenizer, prompts), dim=-1)
    generator = torch.Generator().manual_seed(0)
    size = config.clip_image_size
    logits = torch.zeros(3, 3, size, size).normal_(0, 0.5, generator=generator)
    logits.requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    target = torch.tensor(EXPCLIP_CLASSES)
    for _ in range(steps):
        pixels = torch.sigmoid(logits)
        noisy = pixels + torch.randn(pixels.shape, generator=generator) * 6 / 255
        embeds = model.image_tower(pixel_values=(noisy - mean) / std).image_embeds
        image = F.normalize(embeds, dim=-1)
        loss = F.cross_entropy(100 * image @ text.T, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return (torch.sigmoid(logits).detach().numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def expclip_set(tmp_path_factory) -> dict:
    """RAF-DB basic/ layout, an initial checkpoint and a teacher .npz keyed by sample id."""
    from edge_sdk.models.face_expclip.family import CONFIGS, make_model, recompute_prototypes
    from edge_sdk.models.training import save_checkpoint

    base = tmp_path_factory.mktemp("rafdb")
    root = base / "basic"
    config = CONFIGS["tiny"]
    torch.manual_seed(7)
    model = make_model(config)
    templates = _agreeing_faces(model, config)
    rng = np.random.default_rng(2)
    lines, ids, labels = [], [], []
    for i in range(72):
        k = i % 3
        name = f"train_{i:05d}"
        noisy = templates[k] + rng.normal(0.0, 6.0, templates[k].shape)
        image = np.clip(noisy, 0, 255).astype(np.uint8)
        _write_rgb(root / "Image" / "aligned" / f"{name}_aligned.png", image)
        lines.append(f"{name}.png {EXPCLIP_CLASSES[k] + 1}")
        ids.append(f"Image/aligned/{name}_aligned.png")  # the documented sample id
        labels.append(EXPCLIP_CLASSES[k])
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    init = save_checkpoint(base / "init.safetensors", "face-expclip", model, config)
    prototypes = recompute_prototypes(model, config.vocabulary).numpy()
    teachers = prototypes[labels] + rng.normal(0.0, 0.05, (len(labels), prototypes.shape[1]))
    teacher = base / "teacher.npz"
    np.savez(teacher, ids=np.asarray(ids), embeddings=teachers.astype(np.float32))
    return {"root": root, "init": init, "teacher": teacher, "ids": ids, "dim": config.proj_dim}


def test_expclip_trains_on_rafdb_with_teacher_file_and_bundle_scores_the_same(
    tmp_path: Path, expclip_set: dict
) -> None:
    from export.family_export import export_family

    root = expclip_set["root"]
    result = train_on_data(
        "face-expclip", tmp_path / "expclip.safetensors", f"rafdb:{root}", val_split=0.3,
        epochs=3, batch_size=16, lr=1e-2, seed=SEED, teacher=expclip_set["teacher"],
        init_from=expclip_set["init"],
    )  # fmt: skip
    losses = [e.train_loss for e in result.history]
    assert losses[-1] < losses[0]  # InfoNCE to the teachers goes down
    last = result.history[-1].figures
    assert last["uar"] > 0.8, result.history  # chance: 1/3
    teacher = result.provenance["teacher"]
    assert teacher["file"] == "teacher.npz" and len(teacher["sha256"]) == 64
    bundle = export_family("face-expclip", tmp_path / "bundle", checkpoint=result.last)
    val = split_dataset(read_dataset(root, "rafdb"), 0.3, SEED)[1]
    checked = check_accuracy(bundle, val, faces="given")
    assert checked.samples == result.provenance["samples"]["val"]
    assert checked.metrics.war == pytest.approx(last["war"], abs=0.005)
    assert checked.metrics.uar == pytest.approx(last["uar"], abs=0.005)


def test_expclip_needs_a_teacher_file_with_the_documented_checks(
    tmp_path: Path, expclip_set: dict
) -> None:
    root, ids, dim = expclip_set["root"], expclip_set["ids"], expclip_set["dim"]
    with pytest.raises(InputError, match="needs a teacher embedding file"):
        train_on_data("face-expclip", tmp_path / "x.safetensors", f"rafdb:{root}")
    bad = {
        "duplicate ids": {"ids": np.asarray([ids[0], ids[0]]), "embeddings": np.zeros((2, dim))},
        "wide, the model": {"ids": np.asarray(ids[:1]), "embeddings": np.zeros((1, dim + 1))},
        "NaN or Inf": {"ids": np.asarray(ids[:1]), "embeddings": np.full((1, dim), np.nan)},
        "lacks": {"ids": np.asarray(ids[:1])},
        "not a readable": {"ids": np.asarray([{"a": 1}], dtype=object), "embeddings": np.ones(1)},
    }
    for message, arrays in bad.items():
        path = tmp_path / "teacher.npz"
        np.savez(path, **arrays)
        with pytest.raises(InputError, match=message):
            load_teachers(path, dim)
    partial = tmp_path / "partial.npz"
    np.savez(partial, ids=np.asarray(ids[1:]), embeddings=np.zeros((len(ids) - 1, dim)))
    first = "no teacher embedding for sample id 'Image/aligned/train_00000_aligned.png'"
    with pytest.raises(InputError, match=first):
        train_on_data(
            "face-expclip", tmp_path / "x.safetensors", f"rafdb:{root}", teacher=partial,
            init_from=expclip_set["init"], strict=True,
        )  # fmt: skip


# --------------------------------------------------------------------------- sources, errors
def test_unknown_format_missing_path_and_foreign_format_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown dataset format 'nope'.*affectnet"):
        parse_source(f"nope:{tmp_path}")
    with pytest.raises(InputError, match="is not FORMAT:PATH"):
        parse_source(str(tmp_path))
    missing = tmp_path / "absent.csv"
    with pytest.raises(InputError, match=f"path {missing} does not exist"):
        train_on_data("face-caf", tmp_path / "x.safetensors", f"affectnet:{missing}")
    (tmp_path / "meld").mkdir()
    with pytest.raises(InputError, match=r"trains on \['affectnet', 'jsonl'\], not meld"):
        train_on_data("face-caf", tmp_path / "x.safetensors", f"meld:{tmp_path / 'meld'}")
    with pytest.raises(InputError, match="does not train on data sets"):
        train_on_data("face-blazeface", tmp_path / "x.safetensors", f"folder:{tmp_path}")


def test_cuda_without_a_gpu_is_a_device_error(tmp_path: Path, caf_csv: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="torch sees no CUDA GPU"):
        train_on_data("face-caf", tmp_path / "x.safetensors", f"affectnet:{caf_csv}",
                      device="cuda")  # fmt: skip
    with pytest.raises(InputError, match="device must be one of"):
        train_on_data("face-caf", tmp_path / "x.safetensors", f"affectnet:{caf_csv}",
                      device="tpu")  # fmt: skip


def test_unreadable_image_is_skipped_and_counted_in_workers_but_strict_names_it(
    tmp_path: Path,
) -> None:
    csv = _affectnet_set(tmp_path / "affectnet", count=12)
    broken = tmp_path / "affectnet" / "Manually_Annotated_Images" / "1" / "0004.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    steps: list[tuple[int, int, float]] = []
    result = train_on_data(
        "face-caf", tmp_path / "caf.safetensors", f"affectnet:{csv}", val_split=0.3,
        config=_caf_config(), epochs=2, batch_size=4, workers=2, seed=SEED,
        on_step=lambda *s: steps.append(s),
    )  # fmt: skip
    samples = result.provenance["samples"]
    assert samples["skipped"] == 1 and result.provenance["left_out"]["unreadable file"] == 1
    assert result.history[-1].skipped == 1  # counted once, though it fails every epoch
    assert steps and steps[-1][:2] == (len(steps), len(steps))
    with pytest.raises(UnreadableSampleError, match=rf"{broken}: unreadable sample"):
        train_on_data(
            "face-caf", tmp_path / "strict.safetensors", f"affectnet:{csv}", val_split=0.3,
            config=_caf_config(), epochs=1, batch_size=4, strict=True,
        )  # fmt: skip


def test_resume_continues_from_the_saved_epoch_as_an_uninterrupted_run(
    tmp_path: Path, caf_csv: Path
) -> None:
    common = {"val_split": 0.25, "config": _caf_config(), "batch_size": 16, "seed": SEED}
    data = f"affectnet:{caf_csv}"
    whole = train_on_data("face-caf", tmp_path / "whole.safetensors", data, epochs=2, **common)
    first = train_on_data("face-caf", tmp_path / "part.safetensors", data, epochs=1, **common)
    sidecar = state_path(first.last)
    assert sidecar.is_file() and sidecar.name == "part.last.optim.safetensors"
    resumed = train_on_data(
        "face-caf", tmp_path / "part.safetensors", data, epochs=2, resume=first.last, **common
    )
    assert [e.epoch for e in resumed.history] == [2]
    assert resumed.provenance["epochs"] == 2
    _, whole_state = read_state(whole.last)
    _, resumed_state = read_state(resumed.last)
    for name, tensor in whole_state.items():
        torch.testing.assert_close(resumed_state[name], tensor, rtol=1e-5, atol=1e-6)
    assert resumed.history[-1].figures == pytest.approx(whole.history[-1].figures, abs=1e-5)
    with pytest.raises(InputError, match="already holds epoch 2"):
        train_on_data("face-caf", tmp_path / "p.safetensors", data, epochs=2,
                      resume=resumed.last, **common)  # fmt: skip
    metadata, state = read_state(whole.last)  # the checkpoint changed after its sidecar
    write_state(whole.last, "face-caf", state, metadata["config"], {"edited": True})
    with pytest.raises(WeightsError, match="does not belong to"):
        train_on_data("face-caf", tmp_path / "p.safetensors", data, epochs=3,
                      resume=whole.last, **common)  # fmt: skip


def test_checkpoint_metadata_records_training_provenance_as_json(
    tmp_path: Path, caf_csv: Path
) -> None:
    result = train_on_data(
        "face-caf", tmp_path / "caf.safetensors", f"affectnet:{caf_csv}", val_split=0.25,
        config=_caf_config(), epochs=2, batch_size=32, seed=SEED,
    )  # fmt: skip
    metadata, _ = read_state(result.checkpoint)
    assert metadata["family"] == "face-caf" and TRAINING_METADATA_KEY == "training"
    record = json.loads(metadata[TRAINING_METADATA_KEY])
    assert record["data"] == {"format": "affectnet", "path": str(caf_csv),
                              "name": caf_csv.parent.name, "split": None}  # fmt: skip
    assert record["validation"]["val_split"] == 0.25 and record["validation"]["seed"] == SEED
    assert record["samples"]["train"] + record["samples"]["val"] == 96
    assert record["samples"]["skipped"] == 0 and record["epochs"] == 2
    assert record["main_metric"] == "ccc_mean"
    assert record["final"] == pytest.approx(result.history[-1].figures)
    best = max(result.history, key=lambda e: e.figures["ccc_mean"])
    assert record["best_epoch"] == best.epoch and record["best"] == pytest.approx(best.figures)


def test_val_split_is_seeded_stable_and_order_independent(caf_csv: Path) -> None:
    data = read_dataset(caf_csv, "affectnet", labels=VA)
    root = caf_csv.parent
    train, val = split_dataset(data, 0.25, SEED)
    again = split_dataset(data, 0.25, SEED)[1]
    reordered = dataclasses.replace(data, samples=data.samples[::-1])
    ids = {sample_id(s, root) for s in val.samples}
    assert ids == {sample_id(s, root) for s in again.samples}
    assert ids == {sample_id(s, root) for s in split_dataset(reordered, 0.25, SEED)[1].samples}
    assert len(train) + len(val) == len(data) and 10 <= len(val) <= 40
    other = {sample_id(s, root) for s in split_dataset(data, 0.25, SEED + 1)[1].samples}
    assert other != ids
    assert sample_id(data.samples[0], root) == "Manually_Annotated_Images/0/0000.png"
    # the documented rule, independently: sha256(f"{seed}:{id}")[:8] / 2**64 < fraction
    import hashlib

    def held(key: str) -> bool:
        digest = hashlib.sha256(f"{SEED}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < 0.25

    assert all(held(k) == in_validation(k, 0.25, SEED) for k in (*ids, "x", "y/z.png"))
    with pytest.raises(InputError, match="val_split must lie in"):
        split_dataset(data, 1.0, SEED)


def test_train_command_fine_tunes_on_a_folder_set_and_prints_each_epoch(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge_sdk.cli import app

    root = _folder_set(tmp_path / "faces", per_class=12, size=48)
    out = tmp_path / "fer7.safetensors"
    done = CliRunner().invoke(app, [
        "train", "face-fer7", "--out", str(out), "--data", f"folder:{root}", "--val-split",
        "0.25", "--epochs", "2", "--batch-size", "8", "--seed", str(SEED),
    ])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "epoch 1/2" in done.output and "epoch 2/2" in done.output
    assert "best epoch" in done.output and out.is_file()
    assert training_provenance(out)["data"]["format"] == "folder"
    unknown = CliRunner().invoke(
        app, ["train", "face-fer7", "--out", str(out), "--data", f"nosuch:{root}"]
    )
    assert unknown.exit_code == 2 and "nosuch" in unknown.output


def test_labels_the_model_lacks_fail_or_are_mapped_or_skipped_as_in_check_accuracy(
    tmp_path: Path,
) -> None:
    """IEMOCAP-style data sets carry labels the model lacks (``frustration`` for MELD's
    classes): an error naming it by default, or mapped / skipped and counted on request."""
    import shutil

    root = _folder_set(tmp_path / "faces", per_class=6, size=48)
    shutil.copytree(root / "sad", root / "contempt")
    out = tmp_path / "fer7.safetensors"
    common = dict(val_split=0.3, epochs=1, batch_size=8, seed=SEED)
    with pytest.raises(InputError, match="contempt"):
        train_on_data("face-fer7", out, f"folder:{root}", **common)
    skipped = train_on_data("face-fer7", out, f"folder:{root}", unmapped="skip", **common)
    record = training_provenance(skipped.checkpoint)
    assert record["unmapped"] == "skip"
    assert sum(record["samples"].values()) == 12  # the 6 contempt faces are left out
    mapped = train_on_data("face-fer7", out, f"folder:{root}", label_map={"contempt": "sad"},
                           **common)  # fmt: skip
    record = training_provenance(mapped.checkpoint)
    assert record["label_map"] == {"contempt": "sad"}
    assert record["samples"]["train"] + record["samples"]["val"] == 18
