"""Hostile and oversized image input (issue #11 sections 2 and 3, image parts).

Cases whose memory matters run in a child process under an address-space limit and report the
growth of their own peak RSS over the operation (the peak is reset through /proc/self/clear_refs
just before it), so a regression shows as a failed case or a large peak, never as an exhausted
test machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.errors import InputError
from edge_sdk.pipelines import detector as det
from edge_sdk.pipelines.face import FacePipeline
from edge_sdk.preprocess.image import (
    HEADER_FORMATS,
    MAX_PIXELS,
    ImageHeader,
    decode_image,
    load_image,
    read_header,
    read_image,
)
from tests.conftest import ASTRONAUT, ASTRONAUT_FACE, iou

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_measured(setup: str, operation: str, limit_bytes: int) -> dict:
    """Run ``setup`` then ``operation`` (which sets ``result``) in a child limited to
    ``limit_bytes`` of address space. Returns the outcome (``result`` or the exception as
    ``Type: message``), the operation's seconds and its peak RSS growth in MiB."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    body = "\n".join("    " + line for line in operation.strip().splitlines())
    script = f"""
import json, resource, time
resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))

def kib(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])

{setup}
start_rss = kib("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from here
except OSError:
    pass
start = time.perf_counter()
try:
{body}
    outcome = result
except Exception as exc:
    outcome = f"{{type(exc).__name__}}: {{exc}}"
seconds = time.perf_counter() - start
growth = (kib("VmHWM") - start_rss) / 1024
print(json.dumps({{"outcome": outcome, "seconds": seconds, "growth_mb": growth}}))
"""
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- finding 1: decompression bombs -------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of zero rows: ~110 KB for 30000x30000, which OpenCV inflates
    to 900 MB of grey and then 2.7 GB of RGB. Compressed in slices, never held whole."""
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    block = row * 256
    parts = [packer.compress(block) for _ in range(height // 256)]
    parts += [packer.compress(row * (height % 256)), packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def test_bomb_png_is_refused_from_its_header_in_milliseconds(tmp_path: Path) -> None:
    """The 30000x30000 bomb took 4-33 s and 1.8-5 GB to refuse after decoding; now the header
    refuses it with a peak that does not grow. (The child's 1 GiB limit turns a decode into
    a raw cv2.error instead of GBs.)"""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(30000, 30000))
    assert bomb.stat().st_size < 200_000
    out = run_measured(
        "from edge_sdk.preprocess.image import read_image",
        f"read_image({str(bomb)!r})\nresult = 'accepted'",
        1 << 30,
    )
    assert out["outcome"].startswith("InputError: "), out
    assert f"30000x30000 exceeds the {MAX_PIXELS} pixel limit" in out["outcome"]
    assert out["seconds"] < 0.05, out
    assert out["growth_mb"] < 20, out


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _riff_webp(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    sos = bytes([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 2 + len(app0))
        + app0
        + b"\xff\xc0"
        + struct.pack(">H", 2 + len(sof))
        + sof
        + b"\xff\xda"
        + struct.pack(">H", 2 + len(sos))
        + sos
        + b"\x12\x34\xff\x00\x56" * 4
        + b"\xff\xd9"
    )


def _png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def _gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", 16, 16, 0, 0, 0)  # a small screen, a huge first frame
    control = b"\x21\xf9\x04\x00\x00\x00\x00\x00"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + control + frame + b"\x02\x02\x44\x01\x00\x3b"


def _tiff(width: int, height: int) -> bytes:
    entries = struct.pack("<HHII", 256, 4, 1, width) + struct.pack("<HHII", 257, 3, 1, height)
    return b"II*\x00" + struct.pack("<IH", 8, 2) + entries + struct.pack("<I", 0)


def _bigtiff(width: int, height: int) -> bytes:
    entries = struct.pack(">HHQQ", 256, 16, 1, width) + struct.pack(">HHQ", 257, 3, 1)
    entries += struct.pack(">H", height) + bytes(6)
    return b"MM\x00+" + struct.pack(">HHQQ", 8, 0, 16, 2) + entries + bytes(8)


def _jp2(width: int, height: int) -> bytes:
    ihdr = _box(b"ihdr", struct.pack(">IIHBBBB", height, width, 3, 7, 7, 0, 0))
    return (
        _box(b"jP  ", b"\r\n\x87\n")
        + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + _box(b"jp2h", ihdr)
        + _box(b"jp2c", b"\xff\x4f\xff\xd9")
    )


def _avif(width: int, height: int) -> bytes:
    ispe = _box(b"ispe", bytes(4) + struct.pack(">II", width, height))
    small = _box(b"ispe", bytes(4) + struct.pack(">II", 64, 64))
    meta = _box(
        b"meta", bytes(4) + _box(b"hdlr", bytes(24)) + _box(b"iprp", _box(b"ipco", small + ispe))
    )
    return _box(b"ftyp", b"mif1\x00\x00\x00\x00mif1avif") + meta


def _webp_vp8x(width: int, height: int) -> bytes:
    sizes = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff_webp(b"VP8X", bytes(4) + sizes)


def _webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    return _riff_webp(b"VP8L", b"\x2f" + struct.pack("<I", bits) + bytes(8))


def _webp_vp8(width: int, height: int) -> bytes:
    frame = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return _riff_webp(b"VP8 ", frame + bytes(8))


def _j2k(width: int, height: int) -> bytes:
    siz = struct.pack(">HH8I", 41, 0, width, height, 0, 0, width, height, 0, 0)
    return b"\xff\x4f\xff\x51" + siz


BIG = (65000, 20000)  # OpenCV refuses it with a raw cv2.error (over its own 2^30 limit)
WEBP_BIG = (16384, 16384)  # the most VP8/VP8L can say, still 3x the cap
CRAFTED = {  # case: (format read_header names, header builder, size it states)
    "jpeg": ("jpeg", _jpeg, BIG),
    "png": ("png", _png, BIG),
    "bmp": ("bmp", _bmp, BIG),
    "gif": ("gif", _gif, BIG),
    "webp-vp8x": ("webp", _webp_vp8x, BIG),
    "webp-vp8l": ("webp", _webp_vp8l, WEBP_BIG),
    "webp-vp8": ("webp", _webp_vp8, (16383, 16383)),
    "tiff": ("tiff", _tiff, BIG),
    "bigtiff": ("tiff", _bigtiff, BIG),
    "ppm": ("pnm", lambda w, h: b"P6\n# a comment\n%d %d\n255\n" % (w, h), BIG),
    "pam": ("pam", lambda w, h: b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nENDHDR\n" % (w, h), BIG),
    "pfm": ("pnm", lambda w, h: b"PF\n%d %d\n-1.0\n" % (w, h), BIG),
    "sun": (
        "sun",
        lambda w, h: b"\x59\xa6\x6a\x95" + struct.pack(">7I", w, h, 24, 0, 1, 0, 0),
        BIG,
    ),
    "hdr": (
        "hdr",
        lambda w, h: b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w),
        BIG,
    ),
    "jp2": ("jp2", _jp2, BIG),
    "j2k": ("j2k", _j2k, BIG),
    "avif": ("avif", _avif, BIG),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_bomb_headers_over_the_cap_are_input_errors_before_decoding(case: str) -> None:
    """Each format's header is read exactly and an over-cap size is an InputError naming it
    (65000x20000 was a raw cv2.error; the others decoded or failed opaquely)."""
    kind, make, (width, height) = CRAFTED[case]
    data = make(width, height)
    assert read_header(data) == ImageHeader(kind, width, height)
    with pytest.raises(InputError, match=f"{width}x{height} exceeds the {MAX_PIXELS} pixel"):
        decode_image(data)


@pytest.mark.parametrize(
    ("extension", "source"),
    [
        (".png", "rgb"),
        (".jpg", "rgb"),
        (".bmp", "rgb"),
        (".gif", "rgb"),
        (".webp", "rgb"),
        (".tiff", "rgb"),
        (".ppm", "rgb"),
        (".pgm", "gray"),
        (".pbm", "gray"),
        (".pam", "rgb"),
        (".pfm", "float"),
        (".ras", "rgb"),
        (".hdr", "float"),
        (".jp2", "rgb"),
        (".avif", "rgb"),
    ],
)
def test_bomb_header_reader_knows_every_opencv_format(extension: str, source: str) -> None:
    """Every format the OpenCV wheels write (and so read) still decodes, its header size
    being what OpenCV decodes; formats the reader does not know are refused, not decoded."""
    image = cv2.resize(cv2.imread(str(ASTRONAUT)), (53, 37), interpolation=cv2.INTER_AREA)
    pixels = {"rgb": image, "gray": image[:, :, 1], "float": image.astype(np.float32) / 255}
    try:
        ok, encoded = cv2.imencode(extension, pixels[source])
    except cv2.error:
        pytest.skip(f"this OpenCV build writes no {extension}")
    assert ok
    data = encoded.tobytes()
    header = read_header(data)
    assert (header.width, header.height) == (53, 37)
    assert header.format in HEADER_FORMATS
    assert decode_image(data).shape == (37, 53, 3)


def test_bomb_unknown_formats_and_opencv_errors_become_input_errors() -> None:
    """OpenCV's own assertions (here its 2^20 side limit, under our pixel cap) and formats
    whose size cannot be read from a header end as InputErrors, never a raw cv2.error."""
    with pytest.raises(InputError, match=r"cannot decode this image: .*CV_IO_MAX_IMAGE_WIDTH"):
        decode_image(b"P6\n2000000 12\n255\n" + bytes(64))
    exr = b"\x76\x2f\x31\x01" + bytes(64)  # OpenEXR: disabled in the OpenCV wheels
    with pytest.raises(InputError, match="not a decodable image .*supported: JPEG, PNG"):
        decode_image(exr)
    with pytest.raises(InputError, match="PNG header cut short"):
        decode_image(PNG_SIGNATURE + b"\x00\x00")
    with pytest.raises(InputError, match="TIFF header cut short"):  # an offset past 2^63
        decode_image(b"II+\x00\x08\x00\x00\x00" + (2**63 + 5).to_bytes(8, "little") + bytes(40))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xd8" + b"\xff\xe0\x00\x02" * 70_000 + _jpeg(64, 64)[2:], "more than 65536 markers"),
        (b"\xff\xd8" + b"\xff" * (8 << 20), "no frame header"),
        (_png(64, 64)[:33] + _chunk(b"tEXt", b"") * 1_100_000, "more than 1048576 chunks"),
        (_gif(64, 64)[:13] + b"\x21\xfe" + b"\x01\x00" * 70_000, "more than 65536 blocks"),
        (_box(b"jP  ", b"\r\n\x87\n") + _box(b"free", b"") * 70_000, "more than 65536 boxes"),
    ],
    ids=[
        "jpeg-empty-segments",
        "jpeg-fill-bytes",
        "png-empty-chunks",
        "gif-sub-blocks",
        "jp2-boxes",
    ],
)
def test_bomb_header_walks_are_bounded(data: bytes, message: str) -> None:
    """Files of millions of empty segments, chunks, blocks or boxes cannot keep the header
    walk (Python) busy: the walk stops at a step limit far beyond real files."""
    start = time.perf_counter()
    with pytest.raises(InputError, match=message):
        decode_image(data)
    assert time.perf_counter() - start < 1.0


# --- finding 2: bytes after the end marker -------------------------------------------------------


def _encoded(extension: str) -> bytes:
    ok, data = cv2.imencode(extension, cv2.imread(str(ASTRONAUT)))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_trailing_bytes_after_the_end_marker_are_accepted(extension: str, tmp_path) -> None:
    """A motion photo's video or a camera trailer after EOI/IEND was refused as "truncated"
    (only the last 64/16 bytes were searched); the image is decoded as without it. Files
    really cut short are still refused, including one whose EXIF thumbnail ends in EOI."""
    data = _encoded(extension)
    rng = np.random.default_rng(11)
    video = b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 300_000, np.uint8).tobytes()
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), -1), cv2.COLOR_BGR2RGB)
    for trailer in (video, b"\x00" * 100, b"\xff\xd8" + video[:5000]):
        path = tmp_path / f"trailer{extension}"
        path.write_bytes(data + trailer)
        assert np.array_equal(read_image(path), expected)
    kind = "JPEG" if extension == ".jpg" else "PNG"
    for cut in (data[: len(data) // 2], data[:-2], data[:-1]):
        with pytest.raises(InputError, match=f"truncated {kind}"):
            decode_image(cut)
    if extension == ".jpg":  # a complete thumbnail inside APP1 does not end the image
        thumb = _encoded(".jpg")[:2000] + b"\xff\xd9"
        app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(thumb)) + b"Exif\x00\x00" + thumb
        with_thumb = data[:2] + app1 + data[2:]
        assert np.array_equal(decode_image(with_thumb), expected)
        with pytest.raises(InputError, match="truncated JPEG"):
            decode_image(with_thumb[: len(with_thumb) // 2])
        grey = cv2.imencode(".jpg", cv2.imread(str(ASTRONAUT), cv2.IMREAD_GRAYSCALE))[1]
        want = cv2.cvtColor(cv2.imdecode(grey, -1), cv2.COLOR_GRAY2RGB)
        assert np.array_equal(load_image(bytearray(grey.tobytes()) + b"trailer"), want)


# --- finding 3: large photos ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(face_bundle, device) -> FacePipeline:
    return FacePipeline(face_bundle, device)


def _with(detector: det.MTCNNDetector, **changes) -> det.MTCNNDetector:
    config = dataclasses.replace(detector.config, **changes)
    return det.MTCNNDetector(
        detector.pnet, detector.rnet, detector.onet, detector.preprocessing, config
    )


def test_large_photo_is_detected_on_a_copy_and_mapped_to_full_resolution(
    pipeline, astronaut
) -> None:
    """A 2x image over ``max_side`` is detected on its area-downscaled copy (here exactly the
    original) and the boxes and landmarks come back in the large image's pixel centres;
    images within ``max_side`` are not resized at all (bit-identical)."""
    small = pipeline.detector.detect(astronaut)
    assert len(small) == 1
    big = np.repeat(np.repeat(astronaut, 2, axis=0), 2, axis=1)
    found = _with(pipeline.detector, max_side=512).detect(big)
    np.testing.assert_allclose(found.boxes, (small.boxes + 0.5) * 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(found.landmarks, (small.landmarks + 0.5) * 2 - 0.5, atol=1e-3)
    assert np.array_equal(found.scores, small.scores)
    unbounded = _with(pipeline.detector, max_side=None).detect(astronaut)
    at_limit = _with(pipeline.detector, max_side=512).detect(astronaut)
    for a, b in ((small, unbounded), (small, at_limit)):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.landmarks, b.landmarks)


@pytest.mark.parametrize(("width", "height"), [(700, 600), (701, 601), (700, 363), (700, 364)])
def test_large_photo_pnet_strips_join_to_the_whole_level(pipeline, width, height) -> None:
    """A level over PNET_STRIP_PIXELS runs in overlapping strips whose joined maps are the
    whole level's bit for bit, including the odd bottom edge and a last strip that would be
    shorter than P-Net's window."""
    strips = det.pnet_strips(height, width)
    assert len(strips) > 1
    assert all(top % 2 == 0 and bottom - top >= det.PNET_CELL for top, bottom in strips)
    assert strips[0][0] == 0 and strips[-1][1] == height
    level = np.random.default_rng(width + height).uniform(0, 255, (height, width, 3))
    level = level.astype(np.float32)
    plain = _with(pipeline.detector, parallel=False)
    ((prob, offsets),) = plain._pnet([level])
    want_prob, want_offsets = plain._pnet_level(level)
    assert np.array_equal(prob, want_prob) and np.array_equal(offsets, want_offsets)
    ((fanned, _),) = pipeline.detector._pnet([level])
    assert np.array_equal(fanned, want_prob)


def test_large_photo_8k_frame_gives_full_resolution_boxes_with_bounded_memory(
    face_bundle,
) -> None:
    """An 8K frame failed with BackendError (P-Net's first level over its 4096 px range) after
    ~6 s and GBs; now the face comes back in full-resolution pixels, the detector's working
    memory bounded (a small multiple of the 100 MB frame)."""
    scale, left, top = 4, 3000, 1000
    setup = f"""
import cv2, numpy as np
from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceProbe
from edge_sdk.pipelines.face import FacePipeline
pipe = FacePipeline(ModelBundle.load({str(face_bundle.root)!r}), DeviceProbe().probe())
face = cv2.cvtColor(cv2.imread({str(ASTRONAUT)!r}), cv2.COLOR_BGR2RGB)
face = cv2.resize(face, None, fx={scale}, fy={scale}, interpolation=cv2.INTER_CUBIC)
frame = np.full((4320, 7680, 3), 90, np.uint8)
frame[{top}:{top} + face.shape[0], {left}:{left} + face.shape[1]] = face
del face
"""
    operation = """
found = pipe.predict(frame)
result = [[list(f.box), [list(p) for p in f.landmarks]] for f in found.faces]
"""
    out = run_measured(setup, operation, 3 << 30)
    assert isinstance(out["outcome"], list), out
    assert len(out["outcome"]) == 1, out
    box, landmarks = out["outcome"][0]
    expected = [
        v * scale + off for v, off in zip(ASTRONAUT_FACE, (left, top, left, top), strict=True)
    ]
    assert iou(box, expected) > 0.8, (box, expected)
    assert all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in landmarks)
    frame_mb = 7680 * 4320 * 3 / 2**20  # the detector's working set is bounded: ~100-180 MB
    assert out["growth_mb"] < 2.5 * frame_mb, out
    assert out["seconds"] < 20, out


# --- finding 4: --annotate ----------------------------------------------------------------------


def test_annotate_unsupported_extension_is_an_input_error_naming_the_formats(
    face_bundle, tmp_path
) -> None:
    """``--annotate out.txt`` ended in a cv2.error traceback after the prediction; now it
    is refused before any work with the formats to use."""
    target = tmp_path / "out.txt"
    result = CliRunner().invoke(
        app,
        ["predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--annotate", str(target)],
    )
    assert result.exit_code == 2, result.output
    assert ".txt is not an image format" in result.output
    assert ".png, .jpg" in result.output
    assert not target.exists()


def test_annotate_says_where_it_wrote(face_bundle, tmp_path) -> None:
    """The table says where the annotated image went; the JSON carries it per image."""
    target = tmp_path / "drawn.jpg"
    args = ["predict", str(ASTRONAUT), "--bundle", str(face_bundle.root), "--annotate"]
    result = CliRunner().invoke(app, [*args, str(target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"annotated image written to {target}" in result.output.replace("\n", "")
    assert cv2.imread(str(target)).shape == (512, 512, 3)
    result = CliRunner().invoke(app, [*args, str(target), "--json"], catch_exceptions=False)
    assert json.loads(result.output)["annotated"] == str(target)
