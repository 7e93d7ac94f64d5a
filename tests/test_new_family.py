"""A face family added from outside the library: everything about it lives in this file.

``face-tint`` (a tiny regression head on the face crop: how red-versus-blue the face is, in
[-1, 1]) is registered by a fixture with a TrainingRecipe, its INT8 policy and its face head
(result field, table column), then trained briefly, exported from the checkpoint,
calibrated on synthetic data, verified, predicted beside the default bundle and shown in the
command line's face table, while no library file names it. This is the test to copy when
adding a family (docs/add-a-family.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.conftest import ASTRONAUT, REPO

FAMILY = "face-tint"
ARCHITECTURE = "face-tint_net"
GRAPH = "tint"
LIBRARY_DIRS = ("edge_sdk", "calibration", "export", "runtimes")


@dataclass(frozen=True)
class TintConfig:
    """Sizes of the tint net (JSON values, as every recipe config)."""

    image_size: int = 24
    channels: int = 8


class TintNet(nn.Module):
    """Face crop (batch, 3, S, S) -> tint (batch, 1) in [-1, 1]."""

    def __init__(self, image_size: int = 24, channels: int = 8) -> None:
        super().__init__()
        del image_size  # the net is size-agnostic; the graph spec fixes S
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out = nn.Linear(channels, 1)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.features(face)))


def _synthetic_batch(
    config: TintConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """Noisy crops with a per-image colour cast; the target is the red-minus-blue cast."""
    size = config.image_size
    cast = rng.uniform(-1.0, 1.0, (batch_size, 3, 1, 1))
    faces = cast + 0.3 * rng.normal(0.0, 1.0, (batch_size, 3, size, size))
    tint = np.tanh(cast[:, 0, 0, 0] - cast[:, 2, 0, 0])[:, None]
    return {
        "face": torch.from_numpy(faces.astype(np.float32)),
        "tint": torch.from_numpy(tint.astype(np.float32)),
    }


def _loss(model: TintNet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch["face"]), batch["tint"])


def _register() -> Any:
    """Register the architecture, the family and its face head; returns the Family."""
    from edge_sdk.int8_policy import Int8Policy
    from edge_sdk.manifest import DimRange, GraphSpec, Preprocessing, TensorSpec
    from edge_sdk.models.families import (
        BuiltGraph,
        Family,
        FamilyBuild,
        TrainingRecipe,
        register_family,
    )
    from edge_sdk.models.registry import register_architecture
    from edge_sdk.pipelines.face import FaceColumn
    from edge_sdk.pipelines.face_families import SingleGraphHead
    from edge_sdk.pipelines.registry import register_pipeline

    register_architecture(ARCHITECTURE)(TintNet)

    def preprocessing(config: TintConfig) -> Preprocessing:
        return Preprocessing(
            size=(config.image_size, config.image_size),
            color="rgb",
            scale=1.0 / 255.0,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            interpolation="linear",
            layout="NCHW",
            crop={"square": True, "margin_px": 0},
        )

    def export_build(model: TintNet, config: TintConfig) -> FamilyBuild:
        module = TintNet(**dataclasses.asdict(config))
        module.load_state_dict(model.state_dict(), strict=True)
        size = config.image_size
        spec = GraphSpec(
            name=GRAPH,
            architecture=ARCHITECTURE,
            inputs=(TensorSpec("face", "float32", ("batch", 3, size, size)),),
            outputs=(TensorSpec("tint", "float32", ("batch", 1), kind="regression"),),
            dims={"batch": DimRange(1, 4, 16)},
            config=dataclasses.asdict(config),
        )
        rng = np.random.default_rng(5)
        examples = tuple(
            {"face": rng.normal(0.0, 1.0, (n, 3, size, size)).astype(np.float32)}
            for n in (1, 3, 16)
        )
        return FamilyBuild(
            variant=f"tint-{size}",
            labels=("tint",),
            graphs=(BuiltGraph(spec, module.eval(), examples),),
            preprocessing={"face": preprocessing(config)},
            weights=(),
            config={"pipeline": FAMILY, "model": dataclasses.asdict(config)},
        )

    class TintHead(SingleGraphHead):
        """The face head: one ``tint`` number per face, its own table column."""

        graph_name = GRAPH
        input_name = "face"
        stage = "tint"
        result_fields = ("tint",)
        columns = (FaceColumn("tint", lambda face: f"{face.value('tint'):+.2f}"),)
        accuracy_task = None

        def fill(self, outputs: dict[str, np.ndarray], fields: list[dict[str, Any]]) -> None:
            for i, value in enumerate(outputs["tint"]):
                fields[i]["tint"] = float(value[0])

    register_pipeline(FAMILY)(TintHead)
    return register_family(
        Family(
            name=FAMILY,
            task="face tint (red minus blue cast), regression in [-1, 1]",
            description="a two-layer conv net on the face crop (test family)",
            recipe=TrainingRecipe(
                configs={"tiny": TintConfig(), "edge": TintConfig(channels=12)},
                config_type=TintConfig,
                make_model=lambda config: TintNet(**dataclasses.asdict(config)),
                synthetic_batch=_synthetic_batch,
                loss=_loss,
                export_build=export_build,
            ),
            # Declared here, nowhere else: INT8 on the inputs of Conv/Gemm only.
            int8=Int8Policy(op_types=("Conv", "Gemm"), quantize_outputs=False),
        )
    )


def _unregister() -> None:
    """Take the test family out of the registries again, so that tests iterating every
    registered family in the same session do not meet it (no public unregister exists:
    registration is meant to last for the process)."""
    from edge_sdk.models import families, registry
    from edge_sdk.pipelines import registry as pipelines

    families._FAMILIES.pop(FAMILY, None)
    registry._ARCHITECTURES.pop(ARCHITECTURE, None)
    pipelines._PIPELINES.pop(FAMILY, None)


@pytest.fixture(scope="module")
def tint_family() -> Iterator[Any]:
    family = _register()
    try:
        yield family
    finally:
        _unregister()


@pytest.fixture(scope="module")
def tint_bundle(tint_family: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained briefly, saved as a checkpoint, exported by the library's exporter."""
    from edge_sdk.models.training import save_checkpoint, synthetic_batches, train
    from export.family_export import export_family

    torch.manual_seed(0)
    config = tint_family.recipe.configs["tiny"]
    batches = synthetic_batches(tint_family.recipe, config, seed=1, batch_size=32, count=40)
    model, losses = train(tint_family, config, batches, epochs=3, lr=1e-2, seed=0)
    assert losses[-1] < losses[0]
    root = tmp_path_factory.mktemp("tint")
    checkpoint = save_checkpoint(root / "tint.safetensors", FAMILY, model, config)
    export_family(FAMILY, root / "fp32", checkpoint=checkpoint)
    return root / "fp32"


def test_new_family_int8_policy_travels_in_its_manifest(tint_bundle: Path) -> None:
    from calibration.policy import policy_for
    from edge_sdk.bundle import ModelBundle

    manifest = ModelBundle.load(tint_bundle).manifest
    recorded = manifest.config["int8_policy"]
    assert recorded["op_types"] == ["Conv", "Gemm"] and recorded["quantize_outputs"] is False
    policy = policy_for(manifest)
    assert policy.op_types == ("Conv", "Gemm") and not policy.quantize_outputs
    assert policy.kinds == {GRAPH: {"tint": "regression"}}


def test_new_family_calibrates_verifies_and_predicts(
    tint_bundle: Path, tmp_path: Path, device: Any
) -> None:
    from calibration.ort_int8 import calibrate_bundle
    from edge_sdk import load
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.checks.verify import verify

    calibrated = Path(shutil.copytree(tint_bundle, tmp_path / "int8"))
    result = calibrate_bundle(calibrated, "synthetic", count=96, seed=0, cpu_int8="never")
    assert result.passed and [g.graph for g in result.graphs] == [GRAPH]
    recorded = result.record.graphs[GRAPH]
    assert recorded.get("quantized_outputs", True) is False  # the family's declaration

    checked = verify(ModelBundle.load(calibrated), device, backends=["ort-cpu"])
    assert checked.passed, checked.failures()
    assert {c.precision for c in checked.candidates} >= {"int8"}

    with load([calibrated], with_default=True) as recognizer:
        prediction = recognizer.predict(str(ASTRONAUT))
    (face,) = prediction.faces
    assert face.label == "happy"  # the default bundle's categories, beside the new head
    assert -1.0 <= face.extras["tint"] <= 1.0 and face.value("tint") == face.extras["tint"]
    assert "tint" in prediction.timings_ms  # the head's own stage
    assert face.to_dict()["tint"] == face.extras["tint"]


def test_new_family_shows_in_the_cli_face_table(tint_bundle: Path, face_bundle: Any) -> None:
    """Its column is in the table, though no library file names the family."""
    from edge_sdk.cli import app

    args = ["predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--bundle"]
    runner = CliRunner()
    table = runner.invoke(app, [*args, str(tint_bundle)], catch_exceptions=False)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "label" in line)
    assert "tint" in header and "happy" in table.output
    as_json = runner.invoke(app, [*args, str(tint_bundle), "--json"], catch_exceptions=False)
    face = json.loads(as_json.output)["faces"][0]
    assert face["label"] == "happy" and -1.0 <= face["tint"] <= 1.0
    named = [
        str(path.relative_to(REPO))
        for folder in LIBRARY_DIRS
        for path in (REPO / folder).rglob("*.py")
        if FAMILY in path.read_text(encoding="utf-8")
    ]
    assert named == []


def test_family_declaring_no_int8_policy_gets_the_default(tint_bundle: Path) -> None:
    from calibration.policy import policy_for
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.int8_policy import DEFAULT_INT8_POLICY

    manifest = ModelBundle.load(tint_bundle).manifest
    config = {k: v for k, v in manifest.config.items() if k != "int8_policy"}
    policy = policy_for(dataclasses.replace(manifest, config=config))
    assert policy.method == DEFAULT_INT8_POLICY.method == "minmax"
    assert policy.op_types == ("Conv", "MatMul", "Gemm") and policy.skip_graphs == ()
