"""A model is trained or it says so: random weights are never exported, loaded or run silently.

Finding: ``edge-sdk export face-caf --out caf/`` wrote random weights without a word (every
face then got the same valence/arousal) and the manifest said ``"weights": []`` either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edge_sdk
from edge_sdk.bundle import ModelBundle, sha256_file
from edge_sdk.cli import app
from edge_sdk.errors import BundleError, ExportError
from export.family_export import export_family
from tests.conftest import ASTRONAUT


def test_export_without_a_checkpoint_is_refused_unless_untrained(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--untrained"):
        export_family("face-caf", tmp_path / "caf", config="tiny")
    assert not (tmp_path / "caf" / "manifest.json").exists()
    result = CliRunner().invoke(
        app, ["export", "face-caf", "--out", str(tmp_path / "cli"), "--config", "tiny"]
    )
    assert result.exit_code == 2
    assert "--untrained" in result.output and "Traceback" not in result.output


def test_untrained_bundle_is_marked_and_refused_at_load(tmp_path: Path, caplog) -> None:
    bundle = export_family("face-caf", tmp_path / "caf", config="tiny", untrained=True)
    manifest = ModelBundle.load(bundle.root).manifest
    assert manifest.untrained and manifest.provenance["weights_state"] == "untrained"
    with pytest.raises(BundleError, match="untrained"):
        edge_sdk.load([bundle.root], with_default=True)
    allowed = {"with_default": True, "allow_untrained": True}
    with (
        caplog.at_level(logging.WARNING, logger="edge_sdk.api"),
        edge_sdk.load([bundle.root], **allowed) as recognizer,
    ):
        assert recognizer.predict(str(ASTRONAUT)).faces[0].valence is not None
    assert any("untrained" in r.getMessage() for r in caplog.records)


def test_cli_predict_refuses_untrained_in_one_line(tmp_path: Path) -> None:
    bundle = export_family("face-caf", tmp_path / "caf", config="tiny", untrained=True)
    args = ["predict", str(ASTRONAUT), "--bundle", str(bundle.root)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "untrained" in refused.output
    allowed = CliRunner().invoke(app, [*args, "--allow-untrained", "--json"])
    assert allowed.exit_code == 0, allowed.output


def test_checkpoint_export_records_trained_weights_and_their_hash(tmp_path: Path) -> None:
    from edge_sdk.models.families import get_family
    from edge_sdk.models.training import save_checkpoint, synthetic_batches, train

    family = get_family("face-caf")
    config = family.recipe.configs["tiny"]
    batches = synthetic_batches(family.recipe, config, seed=2, batch_size=4, count=2)
    model, _ = train(family, config, batches, epochs=1, seed=0)
    checkpoint = save_checkpoint(tmp_path / "caf.safetensors", family.name, model, config)
    bundle = export_family("face-caf", tmp_path / "caf", checkpoint)
    provenance = bundle.manifest.provenance
    assert provenance["weights_state"] == "trained" and not bundle.manifest.untrained
    assert provenance["checkpoint_sha256"] == sha256_file(checkpoint)


def test_default_face_bundle_is_pretrained(face_bundle) -> None:
    assert face_bundle.manifest.provenance["weights_state"] == "pretrained"
    assert not face_bundle.manifest.untrained
