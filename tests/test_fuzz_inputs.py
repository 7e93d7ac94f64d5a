"""Property-based fuzzing of the readers a user's bytes reach (issue #11, section 6).

Targets: manifest JSON (``Manifest.from_json`` and ``ModelBundle.load`` of a directory),
WAV files (``read_wav``, ``load_audio`` and the log-mel front-end behind them), dialog JSONL
(``read_dialog_jsonl``) and encoded images (``decode_image``). Inputs are valid files
mutated (fields replaced, deleted, inserted, bytes flipped, cut short) and random data.

The property: every reader returns a result or raises an EdgeSDKError. Any other
exception is a bug: it would reach a user as a traceback instead of one line naming the
problem. hypothesis prints the shrunk input that failed and a ``@reproduce_failure`` line.

In CI each target runs ``EDGE_SDK_FUZZ_EXAMPLES`` examples (default 800: about a minute
for the whole module on two cores). Run longer by hand, e.g.::

    EDGE_SDK_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_fuzz_inputs.py -p no:cacheprovider

No example database is written (``database=None``), so the repository stays clean. The
suite runs a fixed seed (``EDGE_SDK_FUZZ_SEED``, default 20261202), so a landing is never
failed by chance; ``EDGE_SDK_FUZZ_SEED=random`` explores new inputs on every run::

    EDGE_SDK_FUZZ_SEED=random EDGE_SDK_FUZZ_EXAMPLES=5000 \
        python -m pytest -q tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import copy
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_sdk.bundle import MANIFEST_NAME, ModelBundle
from edge_sdk.errors import EdgeSDKError
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.dialog import read_dialog_jsonl
from edge_sdk.preprocess.audio import MelConfig, audio_log_mel, load_audio, read_wav
from edge_sdk.preprocess.image import decode_image
from tests.conftest import ASTRONAUT

pytestmark = pytest.mark.slow  # training, calibration, a real server or fuzzing

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("EDGE_SDK_FUZZ_EXAMPLES", "800"))
settings.register_profile(
    "edge-sdk-fuzz",
    max_examples=EXAMPLES,
    deadline=None,  # a slow example (a big decode) is not a failure
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(test: Any) -> Any:
    """The profile's settings (and ``EDGE_SDK_FUZZ_SEED``'s seed) on a ``@given`` test."""
    test = settings(settings.get_profile("edge-sdk-fuzz"))(test)
    chosen = os.environ.get("EDGE_SDK_FUZZ_SEED", "20261202")
    if chosen != "random":
        test = seed(int(chosen))(test)
    return test


def _result_or_sdk_error(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call``'s result, or None when it raised an EdgeSDKError; anything else propagates
    and fails the example."""
    try:
        return call(*args, **kwargs)
    except EdgeSDKError:
        return None


# ----------------------------------------------------------------------------- JSON values
# Immutable only: a drawn value ends up inside documents that later mutations edit.
_ODD_VALUES = [
    "", "../../etc/passwd", "/etc/passwd", "\udcff", "\x00", -1, 0, 1, 2**63,
    -(2**80), 1e308, -0.0, float("nan"), float("inf"), True, None,
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=16)
    | st.sampled_from(_ODD_VALUES)
    | st.integers(1000, 3000).map(lambda n: "x" * n)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=16,
)
# JSON texts no value serialises to: deep nesting, numbers too long to convert, junk.
RAW_JSON = (
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)
    | st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n)
    | st.integers(4000, 6000).map(lambda n: "1" * n)
    | st.integers(4000, 6000).map(lambda n: '{"schema_version": ' + "9" * n + "}")
    | st.text(max_size=64)
)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a parsed JSON document, depth first."""
    found = []
    stack = [doc]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            found.append((node, key))
            if isinstance(node[key], (dict, list)):
                stack.append(node[key])
    return found


@st.composite
def mutated(draw: st.DrawFn, original: Any, values: st.SearchStrategy = JSON_VALUES) -> Any:
    """``original`` (a parsed JSON document) with one to four fields replaced, deleted or
    added."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(doc)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = copy.deepcopy(draw(values))
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.text(max_size=10))] = copy.deepcopy(draw(values))
        else:
            container.insert(key, copy.deepcopy(draw(values)))
    return doc


# ------------------------------------------------------------------------------- manifests
@pytest.fixture(scope="module")
def seed_manifest(face_bundle: ModelBundle) -> dict[str, Any]:
    """A real manifest: the exported face-fer7 bundle's."""
    return json.loads((face_bundle.root / MANIFEST_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fuzz_bundle(face_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle folder whose artifacts are hard links to the real bundle's (no copying);
    each example rewrites only its manifest."""
    root = tmp_path_factory.mktemp("fuzz-bundle")
    for artifact in face_bundle.manifest.artifacts:
        target = root / artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(face_bundle.root / artifact.path, target)
        except OSError:
            target.write_bytes((face_bundle.root / artifact.path).read_bytes())
    return root


def _manifest_texts(seed_doc: dict[str, Any]) -> st.SearchStrategy[str]:
    return (
        mutated(seed_doc).map(json.dumps)
        | JSON_VALUES.map(json.dumps)
        | RAW_JSON
        | mutated(seed_doc).map(lambda d: json.dumps(d)[: len(json.dumps(d)) // 2])
    )


def test_fuzz_manifest_json(seed_manifest: dict[str, Any]) -> None:
    """Manifest.from_json: a Manifest or a ManifestError for any text."""

    @fuzz
    @given(text=_manifest_texts(seed_manifest))
    def check(text: str) -> None:
        manifest = _result_or_sdk_error(Manifest.from_json, text)
        assert manifest is None or isinstance(manifest, Manifest)

    check()


def test_fuzz_bundle_load(seed_manifest: dict[str, Any], fuzz_bundle: Path) -> None:
    """ModelBundle.load of a folder whose manifest.json holds any bytes (not UTF-8, a BOM,
    paths out of the folder, wrong hashes): a bundle or a BundleError."""
    encoded = _manifest_texts(seed_manifest).map(lambda t: t.encode("utf-8", "surrogatepass"))
    junk = (
        st.binary(max_size=256)
        | encoded.map(lambda b: b"\xef\xbb\xbf" + b)
        | encoded.map(lambda b: b.replace(b'"', b'"\xff', 1))
    )

    @fuzz
    @given(data=encoded | junk)
    def check(data: bytes) -> None:
        (fuzz_bundle / MANIFEST_NAME).write_bytes(data)
        bundle = _result_or_sdk_error(ModelBundle.load, fuzz_bundle)
        assert bundle is None or isinstance(bundle, ModelBundle)

    check()


# ------------------------------------------------------------------------------------ WAV
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_* tail
# About one draw in ten: hypothesis favours small integers, so `integers(0, 9) == 0` would
# not be rare at all. Each field of a WAV is odd this rarely, so that a third of the files
# are valid and the rest break one or two things at a time.
RARELY = st.sampled_from([False] * 9 + [True])
_U16, _U32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
RATES = st.sampled_from([16000, 8000, 44100, 48000])


def _usually(draw: st.DrawFn, normal: st.SearchStrategy, odd: st.SearchStrategy) -> Any:
    return draw(odd) if draw(RARELY) else draw(normal)


def _cut(draw: st.DrawFn) -> float | None:
    """Rarely, the fraction of something to keep (a truncation)."""
    return draw(st.floats(0.0, 1.0)) if draw(RARELY) else None


@dataclass(frozen=True)
class WavCase:
    """A WAV file as the recipe that builds it, so that a failure prints a few fields, not
    kilobytes. ``None`` sizes are the true ones; ``*_cut`` keep that fraction."""

    tag: int
    channels: int
    rate: int
    bits: int
    sub: int  # WAVE_FORMAT_EXTENSIBLE's sub-format (the tag otherwise)
    frames: int
    seed: int
    odd_sample: float | None  # a NaN, Inf or out-of-range value put into float samples
    fmt_cut: float | None
    data_cut: float | None
    fmt_size: int | None
    data_size: int | None
    extra: tuple[tuple[bytes, int | None, bytes, int], ...]  # (id, size, body, position)
    reverse: bool
    riff: bytes
    riff_size: int | None
    file_cut: float | None

    def data(self) -> bytes:
        align = (self.channels * self.bits // 8) & 0xFFFF
        rate, bits = self.rate, self.bits
        fmt = struct.pack("<HHIIHH", self.tag, self.channels, rate, (rate * align) % 2**32,
                          align, bits)  # fmt: skip
        if self.tag == 0xFFFE:
            fmt += struct.pack("<HHIH", 22, bits, 3, self.sub) + _GUID_TAIL
        fmt = _keep(fmt, self.fmt_cut)
        payload = _keep(self._samples(), self.data_cut)
        chunks = [
            (b"fmt ", len(fmt) if self.fmt_size is None else self.fmt_size, fmt),
            (b"data", len(payload) if self.data_size is None else self.data_size, payload),
        ]
        for name, size, body, at in self.extra:
            chunks.insert(min(at, len(chunks)), (name, len(body) if size is None else size, body))
        if self.reverse:
            chunks.reverse()
        body = b"".join(
            name + struct.pack("<I", size) + data + b"\x00" * (len(data) & 1)
            for name, size, data in chunks
        )
        size = len(body) + 4 if self.riff_size is None else self.riff_size
        return _keep(self.riff + struct.pack("<I", size) + b"WAVE" + body, self.file_cut)

    def _samples(self) -> bytes:
        """A tone plus noise; float samples may hold the odd value."""
        rng = np.random.default_rng(self.seed)
        width = max(self.bits // 8, 1)
        count = min(self.frames, 65536 // max(self.channels, 1)) * max(self.channels, 1)
        if self.sub == 3 and width in (4, 8):
            wave = np.sin(np.arange(count) * 0.05) * 0.5 + rng.normal(0, 0.05, count)
            values = wave.astype("<f4" if width == 4 else "<f8")
            if self.odd_sample is not None and count:
                values[rng.integers(0, count, 3)] = self.odd_sample
            return values.tobytes()
        return rng.integers(0, 256, count * width, dtype=np.uint8).tobytes()


def _keep(data: bytes, fraction: float | None) -> bytes:
    return data if fraction is None else data[: int(len(data) * fraction)]


@st.composite
def wav_cases(draw: st.DrawFn) -> WavCase:
    """Mostly valid WAV recipes, with odd fmt fields, declared sizes, chunk orders, extra
    chunks, truncations and out-of-range float samples mixed in."""
    tag = _usually(draw, st.sampled_from([1, 3, 0xFFFE]), _U16)
    sub = _usually(draw, st.sampled_from([1, 3]), _U16) if tag == 0xFFFE else tag
    normal_bits = {1: [16, 8, 24, 32], 3: [32, 64]}.get(sub, [16])
    extra = []
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name = _usually(
            draw, st.sampled_from([b"LIST", b"fact", b"JUNK"]),
            st.sampled_from([b"fmt ", b"data"]) | st.binary(min_size=4, max_size=4),
        )  # fmt: skip
        size = _usually(draw, st.none(), _U32)
        extra.append((name, size, draw(st.binary(max_size=32)), draw(st.integers(0, 2))))
    odd = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -3e38, 4.0, 1e-40])
    return WavCase(
        tag=tag,
        channels=_usually(draw, st.sampled_from([1, 2, 1, 6]), st.sampled_from([0, 65]) | _U16),
        rate=_usually(draw, RATES, st.sampled_from([0, 1, 999, 384_001, 2**31]) | _U32),
        bits=_usually(draw, st.sampled_from(normal_bits), st.sampled_from([0, 12, 4096]) | _U16),
        sub=sub,
        frames=draw(st.sampled_from([4000, 16000, 800, 0, 1, 100])),
        seed=draw(st.integers(0, 2**32 - 1)),
        odd_sample=draw(odd) if draw(st.booleans()) else None,
        fmt_cut=_cut(draw),
        data_cut=_cut(draw),
        fmt_size=_usually(draw, st.none(), _U32),
        data_size=_usually(draw, st.none(), _U32),
        extra=tuple(extra),
        reverse=draw(RARELY),
        riff=_usually(draw, st.just(b"RIFF"), st.sampled_from([b"RIFX", b"RF64"])),
        riff_size=_usually(draw, st.none(), _U32),
        file_cut=_cut(draw),
    )


def test_fuzz_wav() -> None:
    """read_wav / load_audio and the log-mel front-end: an Audio (finite features) or an
    InputError for any WAV bytes."""
    mel = MelConfig()

    @fuzz
    @given(case=wav_cases() | st.binary(max_size=128))
    def check(case: WavCase | bytes) -> None:
        data = case if isinstance(case, bytes) else case.data()
        _result_or_sdk_error(read_wav, data)
        _result_or_sdk_error(load_audio, data)
        features = _result_or_sdk_error(audio_log_mel, data, mel)
        if features is not None:
            assert features.ndim == 2 and features.shape[0] == mel.n_mels
            assert np.isfinite(features).all(), "log-mel features hold NaN or Inf"

    check()


# ---------------------------------------------------------------------------- dialog JSONL
UTTERANCES = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(max_size=40) | SCALARS,
        "speaker": st.text(max_size=8) | SCALARS,
        "audio": st.sampled_from(["a.wav", "../a.wav", "/etc/passwd", "", "sub/../../x"]) | SCALARS,
        "frames": st.lists(st.sampled_from(["f.png", "../f.png"]) | SCALARS, max_size=3) | SCALARS,
        "video": st.sampled_from(["v.mp4", "../v.mp4"]) | SCALARS,
    },
)
JSONL_LINES = (
    UTTERANCES.map(json.dumps).map(str.encode)
    | mutated({"text": "hello", "speaker": "A", "audio": "a.wav"}).map(json.dumps).map(str.encode)
    | JSON_VALUES.map(json.dumps).map(str.encode)
    | RAW_JSON.map(str.encode)
    | st.binary(max_size=48)
)


def test_fuzz_dialog_jsonl() -> None:
    """read_dialog_jsonl: a list of Utterances or an InputError for any file."""
    folder = Path(tempfile.mkdtemp(prefix="edge-sdk-fuzz-dialog-"))
    path = folder / "dialog.jsonl"

    @fuzz
    @given(lines=st.lists(JSONL_LINES, max_size=8), end=st.sampled_from([b"\n", b"\r\n", b""]))
    def check(lines: list[bytes], end: bytes) -> None:
        path.write_bytes(b"\n".join(lines) + end)
        utterances = _result_or_sdk_error(read_dialog_jsonl, path)
        assert utterances is None or (isinstance(utterances, list) and utterances)

    check()


# ---------------------------------------------------------------------------------- images
def _seed_images() -> list[bytes]:
    """Small real encodings: PNG (RGB, gray 16-bit, RGBA), JPEG, BMP, WebP, TIFF."""
    bgr = cv2.imread(str(ASTRONAUT))[60:108, 180:228]
    gray16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    encoded = [
        cv2.imencode(".png", bgr)[1],
        cv2.imencode(".png", gray16)[1],
        cv2.imencode(".png", rgba)[1],
        cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1],
        cv2.imencode(".bmp", bgr)[1],
        cv2.imencode(".webp", bgr)[1],
        cv2.imencode(".tiff", bgr)[1],
    ]
    return [e.tobytes() for e in encoded]


SEED_IMAGES = _seed_images()


def _png_with_size(width: int, height: int) -> bytes:
    """The seed PNG with its IHDR size replaced (CRC fixed so only the size is wrong)."""
    data = bytearray(SEED_IMAGES[0])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(1, 6))):
        header = draw(st.booleans())  # half the edits in the first 64 bytes, where sizes are
        at = draw(st.integers(0, min(len(data), 64) - 1 if header else len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "erase"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "set":
            data[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 64))]
        if not data:
            break
    return bytes(data)


def test_fuzz_image_bytes() -> None:
    """decode_image: an (H, W, 3) uint8 array or an InputError for any bytes."""
    magics = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF", b"II*\x00"])
    sizes = st.integers(0, 2**31 - 1)

    @fuzz
    @given(
        data=mutated_images()
        | st.tuples(magics, st.binary(max_size=256)).map(b"".join)
        | st.tuples(sizes, sizes).map(lambda wh: _png_with_size(*wh))
        | st.binary(max_size=64)
    )
    def check(data: bytes) -> None:
        image = _result_or_sdk_error(decode_image, data)
        if image is not None:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    check()
