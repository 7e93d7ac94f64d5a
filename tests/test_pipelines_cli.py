"""``edge-sdk predict`` with --scene, --audio, --video, --camera and --dialog."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from tests.conftest import ASTRONAUT
from tests.support.bundles import clip, tiny_bundles, voiced
from tests.support.media import float_wav

runner = CliRunner()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    frames = clip(frames=5)
    video = root / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (200, 200))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    wav = root / "voice.wav"
    wav.write_bytes(float_wav(voiced(1.2, 22050, channels=2), 22050))
    cv2.imwrite(str(root / "f0.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    dialog = root / "talk.jsonl"
    dialog.write_text(
        "\n".join(
            json.dumps(x)
            for x in (
                {"text": "i am so happy today", "speaker": "ann"},
                {"audio": "voice.wav", "speaker": "bob"},
                {"text": "look", "frames": ["f0.png"], "speaker": "ann"},
                {"text": "see this", "video": "clip.avi"},
            )
        ),
        encoding="utf-8",
    )
    return {"video": video, "wav": wav, "dialog": dialog}


@pytest.fixture(scope="module")
def bundle_args(face_bundle) -> list[str]:
    bundles = tiny_bundles()
    args = ["--bundle", str(face_bundle.root)]
    for family in ("face-caf", "scene-cocoer", "av-fbp", "dialog-m2fnet"):
        args += ["--bundle", str(bundles[family].root)]
    return args


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_scene_json_and_table(bundle_args) -> None:
    result = _invoke("predict", "--scene", str(ASTRONAUT), *bundle_args, "--json")
    assert result.exit_code == 0, result.output
    scene = json.loads(result.output)["scene"]
    assert scene["image"] == str(ASTRONAUT) and scene["person_count"] == 1
    assert len(scene["people"][0]["removed"]) == 2
    table = _invoke("predict", "--scene", str(ASTRONAUT), "--head-box", "170,40,280,180",
                    "--head-box", "20,30,90,110", *bundle_args)
    assert table.exit_code == 0, table.output
    assert "workspace torch" in table.output and "(expansion)" in table.output
    assert "170," in table.output and "20, 30," in table.output


def test_images_and_scene_together(bundle_args) -> None:
    result = _invoke("predict", str(ASTRONAUT), "--scene", str(ASTRONAUT), *bundle_args, "--json")
    payload = json.loads(result.output)
    assert payload["images"][0]["faces"][0]["label"] == "happy"
    assert "valence" in payload["images"][0]["faces"][0]
    assert payload["scene"]["people"]


def test_audio_and_audio_video(bundle_args, media) -> None:
    alone = _invoke("predict", "--audio", str(media["wav"]), *bundle_args, "--json")
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.output)["audio"]["graph"] == "audio_only"
    both = _invoke("predict", "--audio", str(media["wav"]), "--video", str(media["video"]),
                   *bundle_args, "--json")
    assert both.exit_code == 0, both.output
    payload = json.loads(both.output)
    assert payload["audio"]["graph"] == "audio_video" and payload["audio"]["frames_used"] == 5
    assert payload["video"]["frame_count"] == 5
    table = _invoke("predict", "--audio", str(media["wav"]), "--video", str(media["video"]),
                    *bundle_args)
    assert "via audio_video" in table.output and "5 frames, 5 with a face" in table.output


def test_dialog_file(bundle_args, media) -> None:
    result = _invoke("predict", "--dialog", str(media["dialog"]), *bundle_args, "--json")
    assert result.exit_code == 0, result.output
    utterances = json.loads(result.output)["dialog"]["utterances"]
    assert [u["modalities"] for u in utterances] == [
        ["text"], ["audio"], ["text", "visual"], ["text", "visual"]
    ]
    assert [u["speaker"] for u in utterances] == ["ann", "bob", "ann", None]
    table = _invoke("predict", "--dialog", str(media["dialog"]), *bundle_args)
    assert "text+visual" in table.output and "bob" in table.output


def test_video_stream_jsonl_with_fps_and_annotated_video(face_bundle, media, tmp_path) -> None:
    out = tmp_path / "annotated.avi"
    result = _invoke("predict", "--video", str(media["video"]), "--bundle",
                     str(face_bundle.root), "--annotate", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    frames, summary = lines[:-1], lines[-1]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]
    assert all(f["face_count"] == 1 and f["faces"][0]["label"] == "happy" for f in frames)
    assert all(f["fps"] > 0 for f in frames)
    assert summary["summary"] is True and summary["frames"] == 5 and summary["fps"] > 0
    assert summary["annotated"] == str(out)
    capture = cv2.VideoCapture(str(out))
    written = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(frame)
    capture.release()
    assert len(written) == 5 and written[0].shape == (200, 200, 3)
    original = cv2.cvtColor(clip(frames=1)[0], cv2.COLOR_RGB2BGR).astype(int)
    assert np.abs(written[0].astype(int) - original).mean() > 1  # boxes were drawn
    limited = _invoke("predict", "--video", str(media["video"]), "--bundle",
                      str(face_bundle.root), "--max-frames", "2")
    assert json.loads(limited.output.strip().splitlines()[-1])["frames"] == 2


def test_stream_of_valence_arousal_only_faces_is_annotated(bundle_args, media, tmp_path) -> None:
    caf = tiny_bundles()["face-caf"]
    out = tmp_path / "va.avi"
    result = _invoke("predict", "--video", str(media["video"]), "--bundle", str(caf.root),
                     "--annotate", str(out), "--max-frames", "1")
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert first["faces"][0]["label"] is None and "valence" in first["faces"][0]
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to predict"),
        (["--head-box", "1,2,3,4"], "--head-box needs --scene"),
        (["--scene", str(ASTRONAUT), "--head-box", "1,2,3"], "expected four numbers"),
        (["--scene", str(ASTRONAUT), "--head-box", "a,b,c,d"], "x1,y1,x2,y2 numbers"),
        (["--scene", str(ASTRONAUT), "--head-box", "900,900,990,990"], "lies outside"),
        (["--camera", "97"], "cannot open camera 97"),
        ([str(ASTRONAUT), "--camera", "0"], "takes no other input"),
        (["--video", "missing.avi"], "no such video file"),
        (["--audio", "missing.wav"], "no such audio file"),
        (["--dialog", "missing.jsonl"], "no such dialog file"),
    ],
    ids=["nothing", "box-alone", "box-3", "box-text", "box-outside", "no-camera",
         "stream-and-image", "missing-video", "missing-audio", "missing-dialog"],
)
def test_errors_exit_2_with_one_line(bundle_args, args, message: str) -> None:
    result = runner.invoke(app, ["predict", *args, *bundle_args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_annotated_stream_needs_a_video_name(face_bundle, media, tmp_path) -> None:
    result = runner.invoke(app, ["predict", "--video", str(media["video"]), "--bundle",
                                 str(face_bundle.root), "--annotate", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "needs a .avi or .mp4 name" in result.output
