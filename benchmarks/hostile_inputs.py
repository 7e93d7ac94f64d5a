"""Hostile and oversized inputs: time to the error or result and peak memory, per case.

Run ``python benchmarks/hostile_inputs.py [--case NAME ...] [--bundle DIR] [--timeout S]``.
Every case runs in a fresh Python process, so one case's imports, ONNX Runtime arenas or
exhausted memory never colour another's figures; figures only, no assertions.

A case is three functions (see :class:`Case`): ``make`` writes its input files into a work
folder (in a helper process, untimed), ``prepare`` does the untimed set-up in the measured
process (imports, opening sessions) and ``run`` is the timed operation, returning a short
description of its result. An exception from ``run`` is the case's outcome, not a failure of
the benchmark: the point of most cases is how fast and how cheaply they are refused. To add
a case (audio, video, ...), append a :class:`Case` to :data:`CASES`.

Columns: ``seconds`` from the start of ``run`` to its result or error; ``ru_maxrss`` the
measured process's peak RSS in MiB (``getrusage``; it includes the interpreter, the imports
and the set-up, and at least this small runner's own peak at exec); ``growth`` how far the
peak rose during ``run`` above the RSS it started from (peak reset through
``/proc/self/clear_refs`` where Linux allows it).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.png"


@dataclass(frozen=True)
class Case:
    """One hostile input: how to make it, set it up and run it (see the module docstring)."""

    name: str
    what: str
    make: Callable[[Path], None]
    prepare: Callable[[Path, Path], Any]
    run: Callable[[Any], str]


# --- inputs -----------------------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def _zeros_zlib(total: int, piece: int = 1 << 24) -> bytes:
    """A zlib stream of ``total`` zero bytes in a fraction of a second: after a full flush
    the compressor starts afresh, so one compressed piece repeats; Adler-32 of n zeros is
    ``(n mod 65521) << 16 | 1``."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(piece)) + packer.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total, piece)
    tail = packer.compress(bytes(rest)) + packer.flush(zlib.Z_FINISH)
    adler = (total % 65521) << 16 | 1
    return b"\x78\xda" + block * count + tail + struct.pack(">I", adler)


def png_of_zeros(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A valid all-black PNG whose size on disk is ~1/1000 of its pixels (a bomb)."""
    channels = {0: 1, 2: 3}[color_type]
    row = 1 + (width * channels * bit_depth + 7) // 8
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = _zeros_zlib(row * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG whose frame header states ``width`` x ``height`` (a few bytes of scan)."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    sos = bytes([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (
        b"\xff\xd8\xff\xc0"
        + struct.pack(">H", 2 + len(sof))
        + sof
        + b"\xff\xda"
        + struct.pack(">H", 2 + len(sos))
        + sos
        + bytes(32)
        + b"\xff\xd9"
    )


def photo(width: int, height: int) -> Any:
    """A grey ``width`` x ``height`` BGR frame with the example face upscaled into a corner."""
    import cv2
    import numpy as np

    frame = np.full((height, width, 3), 90, np.uint8)
    side = max(512, min(width, height) // 512 * 512)
    face = cv2.resize(cv2.imread(str(EXAMPLE)), (side, side), interpolation=cv2.INTER_CUBIC)
    frame[:side, width - side :] = face
    return frame


def _write_photo(name: str, width: int, height: int) -> Callable[[Path], None]:
    def make(work: Path) -> None:
        import cv2

        cv2.imwrite(str(work / name), photo(width, height))

    return make


def _write_bytes(name: str, build: Callable[[], bytes]) -> Callable[[Path], None]:
    def make(work: Path) -> None:
        (work / name).write_bytes(build())

    return make


def _with_trailer(work: Path) -> None:
    import cv2

    _, data = cv2.imencode(".jpg", photo(4000, 3000))
    video = b"\x00\x00\x00\x18ftypmp42" + os.urandom(3 << 20)  # a motion photo's video
    (work / "motion.jpg").write_bytes(data.tobytes() + video)


def _truncated(work: Path) -> None:
    import cv2

    _, data = cv2.imencode(".jpg", photo(4000, 3000))
    (work / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])


def wav_of_zeros(rate: int, samples: int) -> bytes:
    """A 16-bit mono PCM WAV of ``samples`` zeros whose header states ``rate`` Hz."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    data = bytes(2 * samples)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + body


# --- set-up and operations in the measured process --------------------------------------------


def _decoder(work: Path, bundle: Path) -> Any:
    from edge_sdk.preprocess.image import read_image

    return read_image


def _decode(name: str) -> Callable[[Any], str]:
    def run(read_image: Any) -> str:
        pixels = read_image(_WORK / name)
        return f"decoded {pixels.shape[1]}x{pixels.shape[0]}"

    return run


def _pipeline(work: Path, bundle: Path) -> Any:
    from edge_sdk.bundle import ModelBundle
    from edge_sdk.device import DeviceProbe
    from edge_sdk.pipelines.face import FacePipeline

    return FacePipeline(ModelBundle.load(bundle), DeviceProbe().probe())


def _pipeline_and_frame(width: int, height: int) -> Callable[[Path, Path], Any]:
    def prepare(work: Path, bundle: Path) -> Any:
        import cv2

        frame = cv2.cvtColor(photo(width, height), cv2.COLOR_BGR2RGB)
        return _pipeline(work, bundle), frame

    return prepare


def _faces(prediction: Any) -> str:
    boxes = "; ".join(", ".join(f"{v:.0f}" for v in face.box) for face in prediction.faces)
    return f"{len(prediction.faces)} face(s): {boxes}" if prediction.faces else "no face"


def _predict_file(name: str) -> Callable[[Any], str]:
    def run(pipeline: Any) -> str:
        return _faces(pipeline.predict(_WORK / name))

    return run


def _predict_frame(state: Any) -> str:
    pipeline, frame = state
    return _faces(pipeline.predict(frame))


def _audio_front_end(work: Path, bundle: Path) -> Any:
    from edge_sdk.preprocess.audio import MelConfig, audio_log_mel

    return lambda audio: audio_log_mel(audio, MelConfig())


def _mel_of_file(name: str) -> Callable[[Any], str]:
    def run(front_end: Any) -> str:
        mel = front_end((_WORK / name).read_bytes())
        return f"log-mel {mel.shape}"

    return run


def _mel_of_bool_rate(front_end: Any) -> str:
    import numpy as np

    mel = front_end((np.zeros(24000, np.float32), True))
    return f"log-mel {mel.shape}"


_WORK = Path()  # the work folder, set in the measured process before ``run``

CASES: list[Case] = [
    Case(
        "png-bomb-30000x30000",
        "2.6 MB RGB PNG of zeros (2.7 GB of pixels)",
        _write_bytes("bomb.png", lambda: png_of_zeros(30000, 30000)),
        _decoder,
        _decode("bomb.png"),
    ),
    Case(
        "png-header-65000x20000",
        "PNG header over OpenCV's own 2^30 pixel limit",
        _write_bytes("huge.png", lambda: png_of_zeros(65000, 20000, 1, 0)),
        _decoder,
        _decode("huge.png"),
    ),
    Case(
        "jpeg-header-65000x20000",
        "JPEG frame header of 65000x20000, a few bytes of scan",
        _write_bytes("huge.jpg", lambda: _jpeg_header(65000, 20000)),
        _decoder,
        _decode("huge.jpg"),
    ),
    Case(
        "jpeg-motion-photo",
        "12 MP JPEG followed by 3 MB of video after EOI",
        _with_trailer,
        _decoder,
        _decode("motion.jpg"),
    ),
    Case(
        "jpeg-truncated",
        "12 MP JPEG cut in half",
        _truncated,
        _decoder,
        _decode("cut.jpg"),
    ),
    Case(
        "photo-12mp",
        "4000x3000 JPEG file through the face pipeline",
        _write_photo("photo12.jpg", 4000, 3000),
        _pipeline,
        _predict_file("photo12.jpg"),
    ),
    Case(
        "frame-8k",
        "7680x4320 RGB array through the face pipeline",
        lambda work: None,
        _pipeline_and_frame(7680, 4320),
        _predict_frame,
    ),
    Case(
        "photo-9000x9000",
        "9000x9000 JPEG file through the face pipeline",
        _write_photo("photo81.jpg", 9000, 9000),
        _pipeline,
        _predict_file("photo81.jpg"),
    ),
    Case(
        "wav-1hz",
        "WAV header of 1 Hz, 24000 samples (48 KB) through the audio front-end",
        _write_bytes("slow.wav", lambda: wav_of_zeros(1, 24000)),
        _audio_front_end,
        _mel_of_file("slow.wav"),
    ),
    Case(
        "samples-rate-true",
        "(24000 samples, True): a bool as the sample rate",
        lambda work: None,
        _audio_front_end,
        _mel_of_bool_rate,
    ),
]


# --- the measured process and the runner -------------------------------------------------------


def _kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return int(handle.read().split(key + ":")[1].split()[0])


def measure(case: Case, work: Path, bundle: Path) -> dict[str, Any]:
    """Prepare and run one case in this process; its outcome, seconds and memory."""
    import resource
    import time

    global _WORK
    _WORK = work
    state = case.prepare(work, bundle)
    linux = Path("/proc/self/status").exists()
    start_rss = _kib("VmRSS") if linux else 0
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # the peak restarts from the current RSS
    except OSError:
        pass
    start = time.perf_counter()
    try:
        outcome = case.run(state)
    except Exception as exc:  # noqa: BLE001 - the outcome being measured, e.g. an InputError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome = f"{type(exc).__name__}: {first}".replace(f"{work}{os.sep}", "")
    seconds = time.perf_counter() - start
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = (_kib("VmHWM") - start_rss) / 1024 if linux else float("nan")
    return {"outcome": outcome, "seconds": seconds, "maxrss_mb": maxrss, "growth_mb": growth}


def _default_bundle() -> Path:
    """The cached default face bundle (exported once if missing), found in a helper process
    so that this runner stays small."""
    code = "from edge_sdk.defaults import default_bundle; print(default_bundle().root)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return Path(done.stdout.strip().splitlines()[-1])


def _spawn(role: str, case: Case, work: Path, bundle: Path, timeout: float) -> dict[str, Any]:
    """Run ``--make`` or ``--measure`` for ``case`` in a fresh interpreter."""
    command = [sys.executable, __file__, f"--{role}", case.name, "--work", str(work)]
    command += ["--bundle", str(bundle)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"outcome": f"timed out after {timeout:g} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"outcome": f"process died ({done.returncode}): {tail}"}
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES])
    parser.add_argument("--bundle", type=Path, default=None, help="face bundle directory")
    parser.add_argument("--work", type=Path, default=None, help="keep the inputs here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--make", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    by_name = {c.name: c for c in CASES}
    if args.make:
        by_name[args.make].make(args.work)
        return
    if args.measure:
        print(json.dumps(measure(by_name[args.measure], args.work, args.bundle)))
        return
    from rich.console import Console
    from rich.table import Table

    bundle = args.bundle or _default_bundle()
    chosen = [by_name[n] for n in args.case] if args.case else CASES
    table = Table(title="hostile inputs (each in a fresh process)")
    for column in ("case", "input", "outcome", "seconds", "ru_maxrss MB", "growth MB"):
        table.add_column(column, justify="right" if "MB" in column or column == "seconds" else None)
    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for case in chosen:
            made = _spawn("make", case, work, bundle, args.timeout)
            row = made if "outcome" in made else _spawn("measure", case, work, bundle, args.timeout)
            table.add_row(
                case.name,
                case.what,
                str(row.get("outcome", "?"))[:90],
                f"{row['seconds']:.3f}" if "seconds" in row else "-",
                f"{row['maxrss_mb']:.0f}" if "maxrss_mb" in row else "-",
                f"{row['growth_mb']:.0f}" if "growth_mb" in row else "-",
            )
    Console(width=max(Console().width, 180)).print(table)


if __name__ == "__main__":
    main()
