"""The sidecar's wire format: framing, array specs, and the error frame.

Why a module of its own: the server and the client must frame, validate and decode messages
identically, and the checks that keep a hostile or confused peer from making us allocate or
unpickle anything live in one place. Protocol version 1, one message per request and reply::

    prefix   20 bytes, little-endian: magic b"EDWS", u16 version, u16 flags (0),
             u32 header length, u64 payload length
    header   UTF-8 JSON object: {"kind": str, "id": int, "arrays": [{"name", "dtype", "shape"}],
             ...kind-specific fields}
    payload  the arrays' bytes back to back, C order, in the header's order

dtypes are ``<f4``, ``<f8`` and ``<i8`` only; nothing is ever unpickled or evaluated. Header,
payload, array count and rank are capped, and the lengths must add up exactly.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_sdk import errors
from edge_sdk.errors import EdgeSDKError, InputError, SidecarError, SidecarProtocolError

MAGIC = b"EDWS"
PROTOCOL_VERSION = 1
PREFIX = struct.Struct("<4sHHIQ")  # magic, version, flags, header bytes, payload bytes
MAX_HEADER = 64 * 1024
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
MAX_ARRAYS = 32
MAX_NDIM = 8
DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8"), "<i8": np.dtype("<i8")}
REQUESTS = ("ping", "info", "update", "shutdown")


class ClosedError(Exception):
    """The peer closed the connection between messages (a normal end, not an error).

    Internal to the sidecar package: the server and the client catch it; it never reaches users.
    """


def _wire_array(name: str, value: Any) -> np.ndarray:
    """A C-contiguous little-endian array of an allowed dtype (floats keep their width)."""
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize in (4, 8):
        dtype = np.dtype(f"<f{array.dtype.itemsize}")
    elif array.dtype.kind in "iub":
        dtype = np.dtype("<i8")
    elif array.dtype.kind == "f":
        dtype = np.dtype("<f8")
    else:
        raise InputError(f"array {name!r} has dtype {array.dtype}; send numbers")
    return np.ascontiguousarray(array, dtype=dtype)


def encode_message(
    kind: str,
    message_id: int,
    arrays: Mapping[str, Any] | None = None,
    *,
    version: int = PROTOCOL_VERSION,
    **fields: Any,
) -> bytes:
    """One framed message (``version`` is a parameter only so tests can forge old ones)."""
    wire = {name: _wire_array(name, value) for name, value in (arrays or {}).items()}
    header = {
        "kind": kind,
        "id": int(message_id),
        "arrays": [
            {"name": name, "dtype": a.dtype.str, "shape": list(a.shape)} for name, a in wire.items()
        ],
        **fields,
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    payload = [a.tobytes() for a in wire.values()]
    prefix = PREFIX.pack(MAGIC, version, 0, len(header_bytes), sum(len(p) for p in payload))
    return b"".join([prefix, header_bytes, *payload])


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (monotonic); TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _recv_into(sock: socket.socket, view: memoryview, deadline: float) -> int:
    """Fill ``view``; returns bytes read before EOF (== len(view) unless the peer closed)."""
    done = 0
    while done < len(view):
        sock.settimeout(remaining(deadline))
        count = sock.recv_into(view[done:])
        if count == 0:
            return done
        done += count
    return done


def _recv_exact(sock: socket.socket, size: int, deadline: float, what: str) -> bytearray:
    buffer = bytearray(size)
    if _recv_into(sock, memoryview(buffer), deadline) != size:
        raise ConnectionResetError(f"connection closed in the middle of the {what}")
    return buffer


def _parse_arrays(
    specs: Any, payload_len: int, max_payload: int
) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The header's array specs, checked before anything is allocated.

    Every dimension is a non-negative int; the byte counts must add up to the payload; and each
    array's extent with zero dimensions counted as one must fit in ``max_payload`` bytes, so a
    "zero-sized" shape such as ``[0, 2**62, 2**62]`` (0 bytes, yet too big for numpy to even
    describe) is refused as a protocol error instead of failing inside ``reshape``.
    """
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise SidecarProtocolError(f"header 'arrays' must be a list of at most {MAX_ARRAYS}")
    parsed, total, names = [], 0, set()
    for spec in specs:
        if not isinstance(spec, dict):
            raise SidecarProtocolError("every array spec must be an object")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        if not isinstance(name, str) or not name or len(name) > 64 or name in names:
            raise SidecarProtocolError(f"bad or repeated array name {name!r}")
        if dtype not in DTYPES:
            raise SidecarProtocolError(f"array {name!r}: dtype {dtype!r} not in {sorted(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise SidecarProtocolError(f"array {name!r}: bad shape {shape!r}")
        names.add(name)
        itemsize = DTYPES[dtype].itemsize
        extent, count = 1, 1
        for n in shape:
            extent *= max(n, 1)
            count *= n
            if extent * itemsize > max_payload:
                raise SidecarProtocolError(
                    f"array {name!r}: shape {shape!r} is too large (more than {max_payload} "
                    "bytes even where a dimension is 0)"
                )
        total += count * itemsize
        if total > payload_len:
            break
        parsed.append((name, DTYPES[dtype], tuple(shape)))
    if total != payload_len:
        raise SidecarProtocolError(
            f"arrays need {total} bytes but the payload has {payload_len}: inconsistent message"
        )
    return parsed


def read_message(
    sock: socket.socket,
    deadline: float,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    first_byte_deadline: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate one message.

    Raises:
        ClosedError: EOF before the first byte (the peer hung up between messages).
        SidecarProtocolError: bad magic, version, sizes, JSON or array specs.
        TimeoutError / OSError: the deadline passed or the connection broke.
    """
    prefix = bytearray(PREFIX.size)
    first = _recv_into(sock, memoryview(prefix)[:1], first_byte_deadline or deadline)
    if first == 0:
        raise ClosedError
    if _recv_into(sock, memoryview(prefix)[1:], deadline) != PREFIX.size - 1:
        raise ConnectionResetError("connection closed in the middle of a message prefix")
    magic, version, _flags, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise SidecarProtocolError(f"not an edge-sdk sidecar message (magic {bytes(magic)!r})")
    if version != PROTOCOL_VERSION:
        raise SidecarProtocolError(
            f"protocol version {version} is not supported (this side speaks "
            f"{PROTOCOL_VERSION}): run the same edge-sdk version on both sides"
        )
    if not 0 < header_len <= MAX_HEADER:
        raise SidecarProtocolError(f"header of {header_len} bytes (limit {MAX_HEADER})")
    if payload_len > max_payload:
        raise SidecarProtocolError(
            f"payload of {payload_len} bytes exceeds the limit of {max_payload} bytes"
        )
    raw = _recv_exact(sock, header_len, deadline, "header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SidecarProtocolError(f"header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SidecarProtocolError("header must be a JSON object")
    kind, message_id = header.get("kind"), header.get("id")
    if not isinstance(kind, str) or not isinstance(message_id, int):
        raise SidecarProtocolError("header needs a string 'kind' and an integer 'id'")
    specs = _parse_arrays(header.get("arrays", []), payload_len, max_payload)
    payload = _recv_exact(sock, payload_len, deadline, "payload")
    arrays, offset = {}, 0
    for name, dtype, shape in specs:
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape)
        offset += count * dtype.itemsize
    return header, arrays


# ------------------------------------------------------------------------------ error frame
def error_fields(exc: BaseException) -> dict[str, str]:
    """The ``error`` object of an error reply: the edge_sdk.errors class name and message."""
    name = type(exc).__name__
    if not isinstance(exc, EdgeSDKError):
        name = "SidecarError"
    return {"type": name, "message": str(exc)}


def is_string_list(value: Any) -> bool:
    """Whether a header field is a list of strings (level or label names)."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def remote_error(fields: Any) -> EdgeSDKError:
    """The typed exception an ``error`` reply stands for (unknown types: SidecarError)."""
    if not isinstance(fields, dict):
        return SidecarProtocolError(f"malformed error reply: {fields!r}")
    name, message = str(fields.get("type")), str(fields.get("message"))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, EdgeSDKError):
        return cls(message)
    return SidecarError(f"sidecar failed: {name}: {message}")
