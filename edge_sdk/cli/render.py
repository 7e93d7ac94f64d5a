"""Tables of predict's results: the faces of an image, then the scene, audio, video and dialog
parts of a combined call (the ``--json`` forms are the results' own ``to_dict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from edge_sdk.cli.base import console
from edge_sdk.reports.tables import fit


def drawable(prediction: Any) -> Any:
    """A FacePrediction whose faces all have a label to draw (a face no categorical head
    labelled gets its heads' columns as its label, e.g. ``valence=+0.12 arousal=-0.30``)."""
    import dataclasses

    from edge_sdk.pipelines.face import face_columns

    faces = []
    for face in prediction.faces:
        if face.label is None:
            cells = [f"{c.name}={c.format(face)}" for c in face_columns((face,))]
            text = " ".join(cells) or "face"
            face = dataclasses.replace(face, label=text, probabilities={text: 1.0})
        faces.append(face)
    return dataclasses.replace(prediction, faces=tuple(faces))


def print_faces(path: Path, prediction: Any) -> None:
    """The face table of one image (or the no-face line): the common columns, then the
    columns each face head declares (:class:`edge_sdk.pipelines.face.FaceColumn`)."""
    from edge_sdk.pipelines.face import face_columns

    total = prediction.timings_ms["total"]
    if not prediction.faces:
        console.print(f"{path}: no face found ({total:.1f} ms)", soft_wrap=True)
        return
    table = Table(title=f"{path} ({total:.1f} ms)")
    extra = face_columns(prediction.faces)
    for column in ["#", "label", "p", "box (x1, y1, x2, y2)", "face score"]:
        table.add_column(column)
    for column in extra:
        table.add_column(column.name)
    for i, face in enumerate(prediction.faces):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        p = f"{face.probabilities[face.label]:.3f}" if face.label is not None else "-"
        row = [str(i), face.label or "-", p, box, f"{face.detection_score:.4f}"]
        answered = {c.name for c in face_columns((face,))}  # "-" where a head gave nothing
        row += [c.format(face) if c.name in answered else "-" for c in extra]
        table.add_row(*row)
    console.print(fit(table))


def print_prediction(prediction: Any, scene_path: Path | None) -> None:
    """Tables for the scene, audio, video and dialog parts of a Prediction."""
    if prediction.scene is not None:
        scene = prediction.scene
        title = f"scene {scene_path} ({scene.timings_ms['total']:.1f} ms, workspace "
        table = Table(title=f"{title}{scene.workspace})")
        for column in ("#", "label", "p", "removed", "kept", "head box", "body box (source)"):
            table.add_column(column)
        for i, person in enumerate(scene.people):
            table.add_row(
                str(i),
                ", ".join(person.labels) or person.label,
                f"{person.probabilities[person.label]:.3f}",
                " > ".join(person.removed) or "-",
                person.kept or "-",
                ", ".join(f"{v:.0f}" for v in person.head_box),
                ", ".join(f"{v:.0f}" for v in person.body_box) + f" ({person.body_source})",
            )
        if scene.people:
            console.print(fit(table))
        else:
            console.print(f"scene {scene_path}: no person found", soft_wrap=True)
    if prediction.audio is not None:
        audio = prediction.audio
        how = audio.graph + (f" ({audio.fallback})" if audio.fallback else "")
        console.print(
            f"audio: {audio.label} p={audio.probabilities[audio.label]:.3f} via {how}, "
            f"{audio.audio_seconds:.2f} s, {audio.frames_used}/{audio.video_frames} frames used "
            f"({audio.timings_ms['total']:.1f} ms)",
            soft_wrap=True,
        )
    if prediction.video is not None:
        video = prediction.video
        with_face = sum(1 for f in video.frames if f.faces)
        console.print(
            f"video: {len(video.frames)} frames, {with_face} with a face, "
            f"{video.fps:.1f} frames/s",
            soft_wrap=True,
        )
    if prediction.dialog is not None:
        dialog = prediction.dialog
        table = Table(title=f"dialog ({dialog.timings_ms['total']:.1f} ms)")
        for column in ("#", "speaker", "text", "label", "p", "modalities"):
            table.add_column(column)
        for u in dialog.utterances:
            table.add_row(
                str(u.index),
                u.speaker or "-",
                (u.text or "")[:40],
                u.label,
                f"{u.probabilities[u.label]:.3f}",
                "+".join(u.modalities),
            )
        console.print(fit(table))
