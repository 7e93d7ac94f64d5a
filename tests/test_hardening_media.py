"""Hostile audio, video, camera and dialog input (issue #11 section 2): refused early and cheaply.

Memory-bound cases run in a child process under an address-space limit and report their own
peak RSS (VmHWM: ``ru_maxrss`` of a child folds in the parent's peak at exec, and pytest holding
the tiny bundles is far larger than the children), so a regression shows as a failed case
(MemoryError, a crash) or a large peak instead of an exhausted test machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.errors import InputError
from edge_sdk.pipelines.dialog import MAX_DIALOG_LINES, Utterance, read_dialog_jsonl
from edge_sdk.preprocess.audio import (
    MAX_AUDIO_SECONDS,
    MelConfig,
    audio_log_mel,
    load_audio,
    read_wav,
    to_mono,
)
from edge_sdk.preprocess.video import load_frames, read_video_file
from tests.support.bundles import tiny_bundles, voiced
from tests.support.media import wav_bytes

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
CHILD_LIMIT = 1 << 30  # address space of a child: an explosion becomes a MemoryError
SMALL_PEAK_KB = 150 * 1024  # the children's baseline (python + numpy) is ~30 MB



def run_limited(body: str) -> dict:
    """Run ``body`` (which fills a dict ``out``) in a child under CHILD_LIMIT bytes of address
    space; returns ``out`` plus the child's own peak RSS in KiB as ``peak_kb``."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    script = (
        "import json, resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_LIMIT}, {CHILD_LIMIT}))\n"
        "out = {}\n"
        "def case(name, call):\n"
        "    try:\n"
        "        call()\n"
        "        out[name] = 'accepted'\n"
        "    except Exception as exc:\n"
        "        out[name] = f'{type(exc).__name__}: {exc}'\n"
        f"{body}\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "out['peak_kb'] = int(status.split()[0])\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- finding 1: sample rate and duration ---------------------------------------------------------


def test_wav_header_rate_outside_range_refused_before_reading(tmp_path: Path) -> None:
    """A 1 Hz header (resampled to 16 kHz it grew 16000-fold: 17-22 GB) and a 500 kHz header
    are refused from the header, from bytes and from files, with a small peak."""
    sound = voiced(1.5, RATE)
    (tmp_path / "one_hz.wav").write_bytes(wav_bytes(sound, 1))
    (tmp_path / "fast.wav").write_bytes(wav_bytes(sound, 500_000))
    out = run_limited(
        "from pathlib import Path\n"
        "from edge_sdk.preprocess.audio import MelConfig, audio_log_mel, load_audio\n"
        f"root = Path({str(tmp_path)!r})\n"
        "for name in ('one_hz', 'fast'):\n"
        "    path = root / f'{name}.wav'\n"
        "    case(name + '-file', lambda: audio_log_mel(path, MelConfig()))\n"
        "    case(name + '-bytes', lambda: audio_log_mel(path.read_bytes(), MelConfig()))\n"
        "    case(name + '-load', lambda: load_audio(path))\n"
    )
    for name, rate in (("one_hz", 1), ("fast", 500000)):
        for how in ("file", "bytes", "load"):
            message = out[f"{name}-{how}"]
            assert message.startswith("InputError"), (name, how, message)
            assert "sample rate must be a positive integer from 1000 to 384000 Hz" in message
            assert f"got {rate}" in message
    assert out["peak_kb"] < SMALL_PEAK_KB, out


def test_in_memory_rate_bool_zero_float_refused_before_resampling() -> None:
    """``(samples, True)`` (a bool is an int: rate 1, resampled 16000-fold), 0, floats
    (16000.5, NaN, even 16000.0) and out-of-range ints are InputErrors with a small peak."""
    out = run_limited(
        "import numpy as np\n"
        "from edge_sdk.preprocess.audio import MelConfig, audio_log_mel\n"
        "samples = np.zeros(24000, np.float32)\n"
        "rates = {'true': True, 'np-true': np.True_, 'zero': 0, 'half': 16000.5,\n"
        "         'nan': float('nan'), 'float': 16000.0, 'negative': -16000, 'low': 999,\n"
        "         'high': 384001, 'string': '16000'}\n"
        "for name, rate in rates.items():\n"
        "    case(name, lambda: audio_log_mel((samples, rate), MelConfig()))\n"
        "case('np-int', lambda: audio_log_mel((samples, np.int64(16000)), MelConfig()))\n"
    )
    for name in ("true", "np-true", "zero", "half", "nan", "float", "negative", "low", "high",
                 "string"):
        assert out[name].startswith("InputError: audio: sample rate must be a positive integer"), (
            name, out[name])
    assert "of type bool" in out["true"] and "of type float" in out["nan"]
    assert out["np-int"] == "accepted"
    assert out["peak_kb"] < SMALL_PEAK_KB, out


def test_wav_claiming_huge_duration_refused_from_header(tmp_path: Path) -> None:
    """A 300 MB (sparse) 16 kHz mono WAV holds ~2.6 h: refused from its header, without
    reading it (peak far below its size); the cap defaults to MAX_AUDIO_SECONDS."""
    long = tmp_path / "long.wav"
    size = 300 * 1024 * 1024
    with long.open("wb") as handle:
        handle.write(wav_bytes(np.zeros(0, np.float32), RATE, declared_data=size - 44))
        handle.truncate(size)  # a hole: no disk space, no memory
    out = run_limited(
        "from edge_sdk.preprocess.audio import MelConfig, audio_log_mel, load_audio\n"
        f"case('load', lambda: load_audio({str(long)!r}))\n"
        f"case('mel', lambda: audio_log_mel({str(long)!r}, MelConfig()))\n"
    )
    for name in ("load", "mel"):
        assert out[name].startswith("InputError"), out[name]
        assert "is longer than the 600 s allowed" in out[name]
    assert out["peak_kb"] < SMALL_PEAK_KB, out
    assert MAX_AUDIO_SECONDS == 600.0


def test_audio_duration_cap_is_overridable(device) -> None:
    """``max_seconds`` on load_audio / read_wav / audio_log_mel and ``max_audio_seconds`` on
    the audio pipeline override the default cap."""
    from edge_sdk.pipelines.audio_video import AudioVideoPipeline

    sound = voiced(2.0, RATE)
    data = wav_bytes(sound, RATE)
    for call in (
        lambda: load_audio((sound, RATE), max_seconds=1.5),
        lambda: load_audio(data, max_seconds=1.5),
        lambda: read_wav(data, max_seconds=1.5),
        lambda: audio_log_mel((sound, RATE), MelConfig(), max_seconds=1.5),
    ):
        with pytest.raises(InputError, match=r"2.0 s of audio .* longer than the 1.5 s allowed"):
            call()
    assert load_audio(data, max_seconds=2.0).samples.shape == (2 * RATE, 1)
    pipeline = AudioVideoPipeline(tiny_bundles()["av-fbp"], device, max_audio_seconds=1.5)
    with pytest.raises(InputError, match="longer than the 1.5 s allowed"):
        pipeline.predict((sound, RATE))
    pipeline.max_audio_seconds = 3.0
    assert pipeline.predict((sound, RATE)).graph == "audio_only"


def test_audio_layout_short_axis_is_channels() -> None:
    """(channels, samples) with more than 8 channels is read as such (it was read as 32
    samples of 16000 channels); a layout with over 64 channels either way is refused; a WAV's
    layout is fixed by its header, whatever its shape (5 frames of 10 channels stay so)."""
    rng = np.random.default_rng(0)
    multi = rng.normal(size=(32, RATE)).astype(np.float32)
    np.testing.assert_allclose(to_mono(multi), multi.mean(axis=0), atol=1e-6)
    assert audio_log_mel((multi, RATE), MelConfig()).shape[0] == 64
    with pytest.raises(InputError, match="would have 200 channels"):
        audio_log_mel((np.zeros((200, RATE), np.float32), RATE), MelConfig())
    few = rng.uniform(-0.5, 0.5, size=(5, 10)).astype(np.float32)  # 5 frames of 10 channels
    wav = read_wav(wav_bytes(few, RATE))
    assert wav.channels_first is False and wav.samples.shape == (5, 10)
    mono = to_mono(wav.samples, channels_first=wav.channels_first)
    np.testing.assert_allclose(mono, few.mean(axis=1), atol=1e-4)


# --- finding 2: decoded video bytes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """10 MJPG frames of 64x48 (9216 decoded BGR bytes each)."""
    path = tmp_path_factory.mktemp("video") / "small.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_video_decoded_bytes_capped(small_video: Path) -> None:
    """The clip's decoded bytes are capped, from the capture's properties before decoding
    (one frame too large; the declared frame count too large) and per decoded frame."""
    frame = 64 * 48 * 3
    with pytest.raises(InputError, match=r"1 frame\(s\) of 64x48 .* more than the 5000 allowed"):
        read_video_file(small_video, max_bytes=5000)
    declared = r"10 frame\(s\) of 64x48 \(the count the file declares\) .* than the 50000 allowed"
    with pytest.raises(InputError, match=declared):
        read_video_file(small_video, max_bytes=50_000)
    with pytest.raises(InputError, match="more than the 50000 allowed"):
        load_frames(small_video, max_bytes=50_000)
    assert len(read_video_file(small_video, max_bytes=10 * frame)) == 10
    frames = [np.zeros((48, 64, 3), np.uint8)] * 10
    with pytest.raises(InputError, match=r"6 frame\(s\) or more .* more than the 50000 allowed"):
        load_frames(frames, max_bytes=50_000)
    with pytest.raises(InputError, match=r"clip: 10 frame\(s\) .* more than the 50000 allowed"):
        load_frames(np.stack(frames), max_bytes=50_000, name="clip")
    assert len(load_frames(np.stack(frames), max_bytes=10 * frame)) == 10


# --- finding 3: negative camera index ------------------------------------------------------------


def test_negative_camera_index_exits_2_with_one_line() -> None:
    """``edge-sdk predict --camera -1`` crashed inside OpenCV (exit 139); now one error line
    and exit 2, and FrameStream refuses negative and bool indices before OpenCV sees them."""
    proc = subprocess.run(
        [sys.executable, "-c", "from edge_sdk.cli import main; main()", "predict",
         "--camera", "-1"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "--camera -1: a camera index is an integer >= 0" in lines[0]
    out = run_limited(
        "from edge_sdk.preprocess.frame_stream import FrameStream\n"
        "case('minus-one', lambda: FrameStream(-1))\n"
        "case('minus-two', lambda: FrameStream(-2))\n"
        "case('bool', lambda: FrameStream(True))\n"
    )
    for name in ("minus-one", "minus-two", "bool"):
        assert out[name].startswith("InputError: camera index must be an integer >= 0"), out


# --- findings 4 and 5: dialog files ---------------------------------------------------------------


def _jsonl(path: Path, *lines: dict) -> Path:
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def dialog_dir(tmp_path: Path) -> Path:
    """tmp/x.wav (outside) and tmp/talk/ (the dialog's folder, with a link to ../x.wav)."""
    (tmp_path / "x.wav").write_bytes(wav_bytes(voiced(1.0, RATE), RATE))
    folder = tmp_path / "talk"
    folder.mkdir()
    (folder / "inside.wav").write_bytes(wav_bytes(voiced(1.0, RATE), RATE))
    os.symlink(tmp_path / "x.wav", folder / "link.wav")
    return folder


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ({"audio": "/etc/passwd"}, "audio '/etc/passwd'"),
        ({"audio": "../x.wav"}, "audio '../x.wav'"),
        ({"audio": "sub/../../x.wav"}, "audio 'sub/../../x.wav'"),
        ({"audio": "link.wav"}, "audio 'link.wav'"),
        ({"text": "hi", "video": "/etc/hostname"}, "video '/etc/hostname'"),
        ({"frames": ["inside.wav", "../x.wav"]}, "frames '../x.wav'"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink", "video", "frame-list"],
)
def test_dialog_media_outside_the_jsonl_folder_refused(dialog_dir: Path, line, named) -> None:
    path = _jsonl(dialog_dir / "talk.jsonl", {"text": "hello"}, line)
    with pytest.raises(InputError, match=rf"utterance 1: {named} lies outside the dialog's"):
        read_dialog_jsonl(path)
    allowed = read_dialog_jsonl(path, allow_outside=True)
    assert len(allowed) == 2


def test_dialog_media_outside_allowed_explicitly_proceeds(dialog_dir: Path) -> None:
    """Inside paths pass by default; outside ones only with allow_outside / the CLI flag, and
    then the file is really read."""
    path = _jsonl(dialog_dir / "talk.jsonl", {"audio": "inside.wav"}, {"audio": "../x.wav"})
    with pytest.raises(InputError, match="outside the dialog's folder"):
        read_dialog_jsonl(path)
    first, second = read_dialog_jsonl(path, allow_outside=True)
    assert first.audio == str(dialog_dir / "inside.wav")
    assert load_audio(second.audio).samples.shape == (RATE, 1)
    assert Utterance.from_value({"audio": "../x.wav"}, 0).audio == "../x.wav"  # no base: as is


def test_dialog_media_outside_cli_flag(face_bundle, dialog_dir: Path) -> None:
    """``predict --dialog`` refuses outside media in one line (exit 2) unless
    ``--allow-outside-media``, which then scores the outside audio."""
    path = _jsonl(dialog_dir / "talk.jsonl", {"text": "hello"}, {"audio": "../x.wav"})
    args = ["predict", "--dialog", str(path), "--json", "--bundle", str(face_bundle.root),
            "--bundle", str(tiny_bundles()["dialog-m2fnet"].root)]
    runner = CliRunner()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert "lies outside the dialog's folder" in refused.output
    allowed = runner.invoke(app, [*args, "--allow-outside-media"])
    assert allowed.exit_code == 0, allowed.output
    utterances = json.loads(allowed.output)["dialog"]["utterances"]
    assert utterances[1]["modalities"] == ["audio"]


def test_dialog_jsonl_not_utf8_or_deeply_nested_is_input_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8, nesting past the parser's recursion limit, over-long
    integers, odd speakers and oversized files are InputErrors naming the file and line."""
    cases = {
        b'{"text": "hi"}\n{"text": "caf\xe9"}\n': r"bad.jsonl:2: not UTF-8 text",
        b'{"text": "hi"}\n' + b"[" * 100_000 + b"\n": r"bad.jsonl:2: JSON nested too deeply",
        b'{"text": "a", "speaker": ' + b"9" * 5000 + b"}\n": r"bad.jsonl:1: unreadable JSON",
        b'{"text": "a", "speaker": ' + b"[" * 100 + b"]" * 100 + b"}\n": "speaker must be",
        b'"hi"\n' * (MAX_DIALOG_LINES + 1): f"more than {MAX_DIALOG_LINES} utterance lines",
    }
    bad = tmp_path / "bad.jsonl"
    for data, message in cases.items():
        bad.write_bytes(data)
        with pytest.raises(InputError, match=message):
            read_dialog_jsonl(bad)
    with bad.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: refused by its size, never read
    with pytest.raises(InputError, match="larger than 16777216 bytes"):
        read_dialog_jsonl(bad)
    bad.write_bytes(b'\xef\xbb\xbf{"text": "hi"}\n')  # a UTF-8 byte-order mark is fine
    assert read_dialog_jsonl(bad)[0].text == "hi"


def test_huge_float_samples_are_refused_instead_of_nan_features() -> None:
    """Found by the fuzzer: finite float samples of 1e30 overflowed |rfft|^2 into NaN
    log-mel features without an error."""
    from edge_sdk.preprocess.audio import MelConfig, audio_log_mel

    wave = (np.sin(np.arange(4000) * 0.05) * 0.5).astype(np.float32)
    wave[[10, 20, 30]] = 1e30
    with pytest.raises(InputError, match=r"expected \[-1, 1\]"):
        audio_log_mel((wave, 16000), MelConfig())
    fine = audio_log_mel((wave.clip(-1, 1), 16000), MelConfig())
    assert np.isfinite(fine).all()
