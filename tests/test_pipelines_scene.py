"""Scene pipeline (CocoER): boxes, windows, the exported graphs and the workspace per person."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import edge_sdk
from edge_sdk.pipelines.face import open_detector
from edge_sdk.pipelines.scene import ScenePipeline, match_bodies
from edge_sdk.preprocess.face import face_tensor
from edge_sdk.preprocess.image import load_image
from edge_sdk.preprocess.windows import body_box_from_head, scene_windows
from edge_sdk.workspace import Workspace
from runtimes.selection import open_graph
from tests.conftest import ASTRONAUT, ASTRONAUT_FACE, iou
from tests.support.bundles import tiny_bundles

HEADS = [[170, 40, 280, 180], [20, 30, 90, 110], [300, 300, 380, 400]]


@pytest.fixture(scope="module")
def scene_bundle():
    return tiny_bundles()["scene-cocoer"]


@pytest.fixture(scope="module")
def pipelines(scene_bundle, face_bundle, device):
    detector, backends = open_detector(face_bundle, device)
    made = {}
    for name in ("torch", "numpy", None):
        pipeline = ScenePipeline(scene_bundle, device, workspace=name)
        pipeline.bind(detector, backends)
        made[name] = pipeline
    return made


def test_detected_head_and_expanded_body(pipelines) -> None:
    result = pipelines["torch"].predict(ASTRONAUT)
    assert len(result.people) == 1
    person = result.people[0]
    assert iou(person.head_box, ASTRONAUT_FACE) > 0.8
    assert person.body_source == "expansion"
    want = body_box_from_head(np.array(person.head_box), (512, 512, 3))
    np.testing.assert_allclose(person.body_box, want, atol=1e-3)
    assert {"decode", "detect", "windows", "levels", "alignment", "workspace", "total"} == set(
        result.timings_ms
    )
    assert result.backends["pnet"] == result.backends["levels"] == "ort-cpu/fp32"


def test_workspace_details_per_person(pipelines, scene_bundle) -> None:
    result = pipelines["torch"].predict(ASTRONAUT, head_boxes=HEADS)
    assert result.workspace == "torch" and len(result.people) == 3
    k = len(scene_bundle.manifest.labels)
    for person in result.people:
        assert person.body_source == "expansion"
        assert len(person.removed) == 2 and len(set(person.removed)) == 2
        assert {*person.removed, person.kept} == {"context", "body", "head"}
        # the removed level is the one with the largest loss among those still in Z
        losses = {name: level.loss for name, level in person.levels.items()}
        assert person.removed[0] == max(losses, key=losses.get)
        refined = np.array([list(person.levels[m].refined.values()) for m in losses])
        final = np.array(list(person.probabilities.values()))
        np.testing.assert_allclose(final, refined.mean(axis=0), atol=1e-6)
        assert final.shape == (k,) and abs(final.sum() - 1) < 1e-5
        assert person.label == max(person.probabilities, key=person.probabilities.get)
        assert person.labels == (person.label,)
        assert abs(sum(person.pseudo_label.values()) - 1) < 1e-5
    assert "pnet" not in result.backends  # caller boxes: the detector did not run


def test_workspace_applied_by_hand_equals_the_pipeline(pipelines, scene_bundle, device) -> None:
    """Windows -> graphs -> Workspace.update, step by step, gives the pipeline's answer."""
    pixels = load_image(ASTRONAUT)
    manifest = scene_bundle.manifest
    head = np.array(HEADS[0], dtype=np.float32)
    windows = scene_windows(pixels, head, None, manifest.preprocessing["windows"])
    levels = open_graph(scene_bundle, "levels", device).run(windows)
    result = pipelines["numpy"].predict(ASTRONAUT, head_boxes=[HEADS[0]])
    prep = manifest.preprocessing["image"]
    picture = face_tensor(pixels, np.array([[0, 0, 512, 512]], np.float32),
                          dataclasses.replace(prep, crop={}))
    alignment = open_graph(scene_bundle, "alignment", device).run({"image": picture})
    expected = Workspace.from_bundle(scene_bundle, backend="numpy").update({**levels, **alignment})
    person = result.people[0]
    np.testing.assert_allclose(
        list(person.probabilities.values()), expected.probabilities[0], atol=1e-6
    )
    assert person.removed == expected.removed_names(0)
    assert person.kept == expected.kept_name(0)


def test_numpy_workspace_equals_torch_and_none_is_the_plain_mean(pipelines) -> None:
    torch_result = pipelines["torch"].predict(ASTRONAUT, head_boxes=HEADS).people
    numpy_result = pipelines["numpy"].predict(ASTRONAUT, head_boxes=HEADS).people
    plain = pipelines[None].predict(ASTRONAUT, head_boxes=HEADS)
    assert plain.workspace == "none"
    for a, b, c in zip(torch_result, numpy_result, plain.people, strict=True):
        assert a.removed == b.removed and a.kept == b.kept
        np.testing.assert_allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-6
        )
        assert c.removed == () and c.kept is None
        initial = np.array([list(c.levels[m].probabilities.values()) for m in c.levels])
        np.testing.assert_allclose(list(c.probabilities.values()), initial.mean(0), atol=1e-6)
        for name in c.levels:  # the initial level predictions do not depend on the workspace
            assert c.levels[name].refined == c.levels[name].probabilities
            np.testing.assert_allclose(
                list(c.levels[name].probabilities.values()),
                list(a.levels[name].probabilities.values()),
                atol=1e-6,
            )


def test_people_are_batched_and_independent(pipelines) -> None:
    together = pipelines["torch"].predict(ASTRONAUT, head_boxes=HEADS).people
    for i, head in enumerate(HEADS):
        alone = pipelines["torch"].predict(ASTRONAUT, head_boxes=[head]).people[0]
        np.testing.assert_allclose(
            list(alone.probabilities.values()), list(together[i].probabilities.values()),
            atol=1e-5,
        )
        assert alone.removed == together[i].removed


def test_caller_body_box_is_used(pipelines) -> None:
    body = [100.0, 20.0, 400.0, 512.0]
    person = pipelines["torch"].predict(
        ASTRONAUT, head_boxes=[HEADS[0]], body_boxes=[body]
    ).people[0]
    assert person.body_source == "caller" and list(person.body_box) == body
    expanded = pipelines["torch"].predict(ASTRONAUT, head_boxes=[HEADS[0]]).people[0]
    assert person.levels["body"].probabilities != expanded.levels["body"].probabilities
    assert person.levels["context"].probabilities == expanded.levels["context"].probabilities


def test_no_face_means_no_person(pipelines, faceless) -> None:
    result = pipelines["torch"].predict(faceless)
    assert result.people == () and result.to_dict()["no_person"] is True


def test_match_bodies_picks_the_best_person_around_each_head() -> None:
    heads = np.array([[40, 10, 60, 30], [200, 20, 220, 40], [500, 500, 520, 520]], np.float32)
    persons = np.array([[0, 0, 100, 300], [30, 5, 90, 200], [180, 0, 260, 300]], np.float32)
    scores = np.array([0.6, 0.9, 0.8])
    bodies, sources = match_bodies(heads, persons, scores, (600, 600, 3))
    np.testing.assert_array_equal(bodies[0], persons[1])
    np.testing.assert_array_equal(bodies[1], persons[2])
    assert sources == ["detector", "detector", "expansion"]
    np.testing.assert_allclose(bodies[2], body_box_from_head(heads[2], (600, 600, 3)))


def test_out_of_process_workspace_gives_the_in_process_answer(scene_bundle, face_bundle,
                                                              device, pipelines) -> None:
    from edge_sdk.sidecar import ManagedSidecar

    with edge_sdk.load([scene_bundle], device=device, detector=face_bundle,
                       workspace="sidecar") as recognizer:
        pipeline = recognizer.pipelines[0]
        assert isinstance(pipeline.workspace, ManagedSidecar)
        result = recognizer.predict(scene={"image": ASTRONAUT, "head_boxes": HEADS}).scene
        assert result.workspace == "ManagedSidecar"
        process = pipeline.workspace.process
        assert process.alive
    assert not process.alive  # close() stopped the child it started
    local = pipelines["torch"].predict(ASTRONAUT, head_boxes=HEADS)
    for a, b in zip(result.people, local.people, strict=True):
        assert a.probabilities == b.probabilities and a.removed == b.removed
