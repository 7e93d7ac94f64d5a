"""Read an encoded image's format and pixel size from its header, and find its end marker.

Every codec of the OpenCV wheels (except OpenEXR, which they leave disabled) is recognised
by its signature and its size read without decoding a pixel, so :mod:`edge_sdk.preprocess.image`
can refuse a decompression bomb in microseconds; JPEG and PNG files are walked to their end
marker because OpenCV decodes truncated files partially with only a warning. Pure Python and
bounded: every walk stops after a fixed number of steps, whatever the file claims.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edge_sdk.errors import InputError

# Most chunks, segments, blocks or boxes walked in one file: far beyond real files, and it
# keeps a file made of millions of empty segments from spinning the walk in Python.
_MAX_STEPS = 1 << 16
_MAX_PNG_CHUNKS = 1 << 20  # 8 GB of libpng's 8 KB IDAT chunks


class _HeaderError(Exception):
    """A header shorter or stranger than its format allows (becomes an InputError)."""


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image's header says: its format and pixel size, nothing decoded."""

    format: str
    width: int
    height: int


def read_header(data: bytes, name: str = "image bytes") -> ImageHeader:
    """Format and size of an encoded image from its header alone (microseconds).

    This is what lets :func:`decode_image` refuse a decompression bomb (a 100 KB PNG that
    inflates to 30000x30000) before a pixel is decoded: OpenCV reads the same headers but
    then decodes anything up to 2^30 pixels. Only formats whose size can be read this way
    are accepted (:data:`HEADER_FORMATS`: the codecs of the OpenCV wheels except OpenEXR,
    which they leave disabled); anything else is refused as not decodable rather than
    handed to a decoder whose memory nothing bounds.
    """
    if not data:
        raise InputError(f"{name}: empty (0 bytes), not an image")
    kind = _format_of(data)
    if kind is None:
        raise InputError(
            f"{name}: not a decodable image (format not recognised; supported: "
            f"{', '.join(HEADER_FORMATS.values())})"
        )
    label = HEADER_FORMATS[kind]
    try:
        width, height = _SIZE_READERS[kind](data)
    except (_HeaderError, struct.error, IndexError, ValueError, OverflowError) as exc:
        detail = f" ({exc})" if isinstance(exc, _HeaderError) else ""
        raise InputError(f"{name}: {label} header cut short or malformed{detail}") from None
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: {label} header gives an empty size {width}x{height}")
    return ImageHeader(kind, int(width), int(height))


def _format_of(data: bytes) -> str | None:
    """The format named by the signature at the start of ``data``, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "avif" if _avif_brand(data) else None
    for prefix, kind in _SIGNATURES:
        if data.startswith(prefix):
            return kind
    return None


def _avif_brand(data: bytes) -> bool:
    """Whether an ISO media ``ftyp`` box lists the AVIF image or sequence brand."""
    brands = data[8 : min(int.from_bytes(data[:4], "big"), 256)]
    return any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4))


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise _HeaderError("the first chunk is not IHDR")
    return struct.unpack_from(">II", data, 16)


def _png_end(data: bytes) -> int | None:
    """Offset just past the IEND chunk, found by walking the chunks; None if cut short."""
    pos = 8
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 12 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if kind == b"IEND":
            return pos if pos <= len(data) else None
    raise _HeaderError(f"more than {_MAX_PNG_CHUNKS} chunks")


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers, not DHT/JPG/DAC
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing), RSTn or more 0xFF (fill);
# any other byte after it is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_FILL = re.compile(rb"\xff+")


def _jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset after it) for every marker after SOI up to EOI, following segment
    lengths and skipping entropy-coded data; ends early where the data ends.

    Bytes between segments that are not a marker are skipped, as libjpeg does.
    """
    pos, size = 2, len(data)
    for _ in range(_MAX_STEPS):
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return
        pos = _FILL.match(data, pos).end()  # type: ignore[union-attr]  # past fill bytes
        if pos >= size:
            return
        marker = data[pos]
        pos += 1
        if marker == 0x00:  # a stuffed byte outside a scan: junk, skipped
            continue
        yield marker, pos
        if marker == 0xD9:
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # RSTn, TEM: no length
            continue
        if pos + 2 > size:
            return
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()
    raise _HeaderError(f"more than {_MAX_STEPS} markers")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    for marker, pos in _jpeg_markers(data):
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:
                raise _HeaderError("height deferred to a DNL marker, which is not supported")
            return width, height
        if marker in (0xDA, 0xD9):
            break
    raise _HeaderError("no frame header (SOF) before the image data")


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the EOI marker of the image that starts ``data``; None if cut."""
    for marker, pos in _jpeg_markers(data):
        if marker == 0xD9:
            return pos
    return None


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)  # a negative height means rows stored top-down


def _gif_size(data: bytes) -> tuple[int, int]:
    """The logical screen, grown to the first frame if that is larger (both get buffers)."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    steps = 0
    while pos < len(data) and data[pos] == 0x21:  # extension blocks before the first frame
        pos += 2
        while data[pos]:
            pos += 1 + data[pos]
            steps += 1
            if steps > _MAX_STEPS:
                raise _HeaderError(f"more than {_MAX_STEPS} blocks before the first frame")
        pos += 1
    if pos < len(data) and data[pos] == 0x2C:
        frame_w, frame_h = struct.unpack_from("<HH", data, pos + 5)
        width, height = max(width, frame_w), max(height, frame_h)
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _HeaderError("shorter than a WebP header")
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":  # lossless: 14-bit sizes minus one after the 0x2f signature
        if data[20] != 0x2F:
            raise _HeaderError("no VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key frame's start code
        if data[23:26] != b"\x9d\x01\x2a":
            raise _HeaderError("no VP8 key frame start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise _HeaderError(f"unknown first chunk {chunk!r}")


_TIFF_VALUE = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of the first IFD, classic or BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        (ifd,) = struct.unpack_from(order + "Q", data, 8)
        count_format, entry, value_at = "Q", 20, 12
    else:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        count_format, entry, value_at = "H", 12, 8
    (count,) = struct.unpack_from(order + count_format, data, ifd)
    start = ifd + struct.calcsize(count_format)
    sizes: dict[int, int] = {}
    for at in range(start, start + entry * min(count, _MAX_STEPS), entry):
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):
            if kind not in _TIFF_VALUE:
                raise _HeaderError(f"tag {tag} has field type {kind}")
            (sizes[tag],) = struct.unpack_from(order + _TIFF_VALUE[kind], data, at + value_at)
            if len(sizes) == 2:
                return sizes[256], sizes[257]
    raise _HeaderError("no ImageWidth/ImageLength in the first IFD")


_PNM_NUMBER = re.compile(rb"(?:\s|#[^\n]*\n)*(\d{1,10})")


def _pnm_size(data: bytes) -> tuple[int, int]:
    """Width and height after the magic of PBM/PGM/PPM (P1-P6) and PFM, comments allowed."""
    pos, sizes = 2, []
    for _ in range(2):
        found = _PNM_NUMBER.match(data, pos)
        if found is None:
            raise _HeaderError("no width and height after the magic number")
        sizes.append(int(found[1]))
        pos = found.end()
    return sizes[0], sizes[1]


def _pam_size(data: bytes) -> tuple[int, int]:
    end = data.find(b"ENDHDR", 0, 1 << 16)
    if end < 0:
        raise _HeaderError("no ENDHDR line")
    found = {
        key: int(value)
        for key, value in re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d{1,10})", data[:end], re.M)
    }
    if len(found) != 2:
        raise _HeaderError("no WIDTH and HEIGHT lines")
    return found[b"WIDTH"], found[b"HEIGHT"]


_HDR_RESOLUTION = re.compile(rb"[-+]([XY]) +(\d{1,10}) +[-+]([XY]) +(\d{1,10})")


def _hdr_size(data: bytes) -> tuple[int, int]:
    """Radiance RGBE: the resolution line follows the blank line that ends the header."""
    end = data.find(b"\n\n", 0, 1 << 16)
    found = _HDR_RESOLUTION.match(data, end + 2) if end >= 0 else None
    if found is None or found[1] == found[3]:
        raise _HeaderError("no resolution line after the header")
    sizes = {found[1]: int(found[2]), found[3]: int(found[4])}
    return sizes[b"X"], sizes[b"Y"]


def _sun_size(data: bytes) -> tuple[int, int]:
    return struct.unpack_from(">II", data, 4)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO media / JP2 boxes in data[start:end]."""
    pos, steps = start, 0
    while pos + 8 <= end:
        steps += 1
        if steps > _MAX_STEPS:
            raise _HeaderError(f"more than {_MAX_STEPS} boxes")
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:  # 64-bit size follows the type
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:  # up to the end
            size = end - pos
        if size < head:
            raise _HeaderError(f"box {kind!r} of {size} bytes")
        yield kind, pos + head, min(pos + size, end)
        pos += size


def _nested(data: bytes, start: int, end: int, path: tuple[bytes, ...]) -> Iterator[int]:
    """Payload offsets of every box reached by ``path`` below data[start:end]. ``meta`` is
    a full box: its children start after 4 bytes of version and flags."""
    for kind, begin, stop in _boxes(data, start, end):
        if kind == path[0]:
            if len(path) == 1:
                yield begin
            else:
                yield from _nested(data, begin + 4 * (kind == b"meta"), stop, path[1:])


def _jp2_size(data: bytes) -> tuple[int, int]:
    for at in _nested(data, 0, len(data), (b"jp2h", b"ihdr")):
        height, width = struct.unpack_from(">II", data, at)
        return width, height
    raise _HeaderError("no image header box (jp2h/ihdr)")


def _j2k_size(data: bytes) -> tuple[int, int]:
    """Raw JPEG 2000 codestream: the SIZ segment's reference grid minus its offset."""
    width, height, left, top = struct.unpack_from(">IIII", data, 8)
    return width - left, height - top


def _avif_size(data: bytes) -> tuple[int, int]:
    """The largest image-spatial-extent property: every item (grid, tile, alpha) fits."""
    sizes = [
        struct.unpack_from(">II", data, at + 4)  # after the full box's version and flags
        for at in _nested(data, 0, len(data), (b"meta", b"iprp", b"ipco", b"ispe"))
    ]
    if not sizes:
        raise _HeaderError("no image size property (ispe)")
    return max(w for w, _ in sizes), max(h for _, h in sizes)


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    *((b"P" + magic, "pnm") for magic in (b"1", b"2", b"3", b"4", b"5", b"6", b"F", b"f")),
    (b"P7", "pam"),
    (b"\x59\xa6\x6a\x95", "sun"),
    (b"#?", "hdr"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xff\x4f\xff\x51", "j2k"),
)
_SIZE_READERS: dict[str, Callable[[bytes], tuple[int, int]]] = {
    "jpeg": _jpeg_size,
    "png": _png_size,
    "bmp": _bmp_size,
    "gif": _gif_size,
    "webp": _webp_size,
    "tiff": _tiff_size,
    "pnm": _pnm_size,
    "pam": _pam_size,
    "sun": _sun_size,
    "hdr": _hdr_size,
    "jp2": _jp2_size,
    "j2k": _j2k_size,
    "avif": _avif_size,
}
# Formats whose size is read from the header, by the name used in messages.
HEADER_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "bmp": "BMP",
    "gif": "GIF",
    "webp": "WebP",
    "tiff": "TIFF",
    "pnm": "PBM/PGM/PPM/PFM",
    "pam": "PAM",
    "sun": "Sun raster",
    "hdr": "Radiance HDR",
    "jp2": "JPEG 2000",
    "j2k": "JPEG 2000 codestream",
    "avif": "AVIF",
}
_END_FINDERS: dict[str, Callable[[bytes], int | None]] = {"jpeg": _jpeg_end, "png": _png_end}


def check_complete(data: bytes, kind: str, name: str) -> None:
    """Reject JPEG/PNG files cut short (OpenCV would decode them partially); whatever
    follows the end marker (a camera trailer, a motion photo's video) is left alone."""
    finder = _END_FINDERS.get(kind)
    try:
        end = None if finder is None else finder(data)
    except _HeaderError as exc:
        raise InputError(f"{name}: {HEADER_FORMATS[kind]} structure refused ({exc})") from None
    if finder is not None and end is None:
        marker = "end-of-image marker" if kind == "jpeg" else "IEND chunk"
        raise InputError(f"{name}: truncated {HEADER_FORMATS[kind]} (no {marker})")
