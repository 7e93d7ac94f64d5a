"""TensorRT 8.x implicit INT8 calibration (JetPack 5 only) from the same recorded feeds.

TensorRT 10.1 deprecated implicit calibrators and 11 removed them; on those versions
engines are built from the QDQ ONNX instead. For TensorRT 8.x this module supplies:

- :class:`CalibrationBatches`: the ORT reader's single-sample feeds stacked into the fixed
  batches TensorRT's ``get_batch`` hands out (plain numpy, tested here);
- the calibration cache in TensorRT's text format (a header line, then ``tensor: scale``
  with the scale as the hex of its float32 bits), written from the ranges ONNX Runtime
  measured, so both back-ends use one set of ranges; and its parser (tested here);
- :func:`entropy_calibrator`: the ``IInt8EntropyCalibrator2`` subclass, created only
  where ``tensorrt`` imports (never run on a machine of this project).
"""

from __future__ import annotations

import json
import struct

import numpy as np

from edge_sdk.errors import CalibrationError

CACHE_HEADER = "TRT-8601-EntropyCalibration2"
INT8_MAX = 127.0

Feed = dict[str, np.ndarray]


class CalibrationBatches:
    """Fixed-size batches over single-sample feeds; an incomplete last batch is dropped
    (TensorRT's calibrator has one batch size) and fewer than one batch is an error."""

    def __init__(self, feeds: list[Feed], batch_size: int) -> None:
        if batch_size < 1:
            raise CalibrationError(f"batch size must be positive, got {batch_size}")
        if len(feeds) < batch_size:
            raise CalibrationError(
                f"{len(feeds)} calibration samples are fewer than one batch of {batch_size}"
            )
        self.batch_size = batch_size
        self._feeds = feeds
        self._position = 0

    def __len__(self) -> int:
        return len(self._feeds) // self.batch_size

    def next_batch(self) -> Feed | None:
        """The next stacked batch, or None when every full batch has been handed out."""
        start = self._position * self.batch_size
        if self._position >= len(self):
            return None
        chunk = self._feeds[start : start + self.batch_size]
        self._position += 1
        return {name: np.concatenate([f[name] for f in chunk]) for name in chunk[0]}

    def rewind(self) -> None:
        self._position = 0


def trt_cache_from_ranges(ranges_json: bytes, header: str = CACHE_HEADER) -> bytes:
    """TensorRT's calibration cache text from ONNX Runtime's range cache (symmetric scales)."""
    try:
        data = json.loads(ranges_json)["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"not an ONNX Runtime range cache: {exc}") from exc
    lines = [header]
    for tensor in sorted(data):
        entry = data[tensor]
        low, high = _range(entry)
        scale = max(abs(low), abs(high)) / INT8_MAX
        bits = struct.unpack(">I", struct.pack(">f", scale))[0]
        lines.append(f"{tensor}: {bits:08x}")
    return ("\n".join(lines) + "\n").encode()


def _range(entry: object) -> tuple[float, float]:
    if isinstance(entry, dict) and "lowest" in entry:
        return float(entry["lowest"]), float(entry["highest"])
    if isinstance(entry, dict) and "range_value" in entry:  # older ORT layouts
        low, high = entry["range_value"]
        return float(low), float(high)
    if isinstance(entry, list | tuple) and len(entry) == 2:
        return float(entry[0]), float(entry[1])
    raise CalibrationError(f"unrecognised range entry {entry!r}")


def parse_trt_cache(cache: bytes) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale) from a TensorRT calibration cache."""
    lines = cache.decode().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise CalibrationError("not a TensorRT calibration cache (no TRT- header line)")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], 2):
        name, sep, value = line.rpartition(": ")
        if not sep:
            raise CalibrationError(f"calibration cache line {number}: {line!r}")
        scales[name] = struct.unpack(">f", struct.pack(">I", int(value, 16)))[0]
    return lines[0], scales


def entropy_calibrator(batches: CalibrationBatches, cache: bytes | None) -> object:
    """An ``IInt8EntropyCalibrator2`` over ``batches``; uses ``cache`` when given.

    Device buffers come from cuda-python; the cache TensorRT writes is kept on the object
    (``.written``) for the caller to store in the bundle.
    """
    import tensorrt as trt

    from runtimes.tensorrt_backend import check_cuda, cuda_runtime

    cuda = cuda_runtime()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.written: bytes | None = None
            self._buffers: dict[str, int] = {}

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = batches.next_batch()
            if batch is None:
                return None
            pointers = []
            for name in names:
                host = np.ascontiguousarray(batch[name])
                if name not in self._buffers:
                    self._buffers[name] = check_cuda(cuda.cudaMalloc(host.nbytes))
                kind = cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
                target = self._buffers[name]
                check_cuda(cuda.cudaMemcpy(target, host.ctypes.data, host.nbytes, kind))
                pointers.append(self._buffers[name])
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            return cache

        def write_calibration_cache(self, data: bytes) -> None:
            self.written = bytes(data)

    return _Calibrator()
