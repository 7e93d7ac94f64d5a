"""ModelBundle: a directory holding ``manifest.json`` and the artifacts it lists.

Model files are untrusted input. A bundle is only opened after its manifest passed the
schema (:func:`edge_sdk.manifest.check_schema`), every artifact's sha256 matches the
manifest, every path is a plain relative one inside the bundle directory, no symlink is
involved and every external-data file an ONNX model names is itself a hashed artifact.
Artifact bytes handed to a runtime are the bytes that were hashed, so a file swapped
between check and use is caught too.

A bundle's **digest** (``sha256:<hex>`` of the manifest file's bytes, which list every
artifact's sha256) names one exact bundle: ``edge-sdk doctor --bundle DIR`` prints it,
and ``ModelBundle.load(DIR, digest=...)`` (``edge_sdk.load``, ``--digest``) refuses any
other bundle before parsing its manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from edge_sdk.errors import BundleError, InputError
from edge_sdk.manifest import (
    MAX_MANIFEST_BYTES,
    Artifact,
    Manifest,
    bundle_path_problem,
    path_error,
)

MANIFEST_NAME = "manifest.json"
DIGEST_PREFIX = "sha256:"
_CHUNK = 1 << 20
_HEX64 = re.compile("[0-9a-f]{64}")
_DECIMAL = re.compile("[0-9]{1,19}")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large weights do not sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_digest(manifest_bytes: bytes) -> str:
    """``sha256:<hex>`` of the manifest file's bytes: one name for the manifest and, through
    the sha256 it lists for each, every artifact (all checked when the bundle is loaded)."""
    return DIGEST_PREFIX + sha256_bytes(manifest_bytes)


def normalize_digest(digest: str) -> str:
    """``sha256:<64 hex>`` from that form or the bare hex; InputError for anything else."""
    text = digest.strip().lower() if isinstance(digest, str) else ""
    hex_part = text.removeprefix(DIGEST_PREFIX)
    if not _HEX64.fullmatch(hex_part):
        raise InputError(f"a bundle digest is sha256:<64 hex digits>, got {digest!r}")
    return DIGEST_PREFIX + hex_part


def _refuse_other(root: Path, actual: str, expected: str) -> None:
    wanted = normalize_digest(expected)
    if actual != wanted:
        raise BundleError(
            f"bundle {root} has digest {actual}, but {wanted} was required: "
            "refusing a bundle other than the pinned one"
        )


def check_relative(relative: str) -> PurePosixPath:
    """Refuse anything but a plain relative path (no absolute, drive, backslash, NUL, ``.``,
    ``..`` or hidden part) before touching the filesystem."""
    error = path_error(relative)
    if error is not None:
        raise BundleError(str(error))
    return PurePosixPath(relative)


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse absolute paths, ``..`` escapes and symlinks."""
    pure = check_relative(relative)
    candidate = root.joinpath(*pure.parts)
    probe = root
    for part in pure.parts:
        probe = probe / part
        if probe.is_symlink():
            raise BundleError(f"artifact path {relative!r} goes through a symlink ({probe})")
    resolved = candidate.resolve()
    if root.resolve() not in resolved.parents:
        raise BundleError(f"artifact path {relative!r} resolves outside the bundle ({resolved})")
    return resolved


def _open_regular(path: Path) -> int:
    """A descriptor of ``path`` if it is a regular file: a final symlink is not followed and
    a FIFO does not block the open (either is refused, as are devices)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise BundleError(f"cannot open {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{path} is not a regular file")
    return fd


def _read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path``; at most ``limit`` + 1 of them when given."""
    with os.fdopen(_open_regular(path), "rb") as handle:
        return handle.read() if limit is None else handle.read(limit + 1)


def _hash_regular(path: Path) -> str:
    """Hex sha256 of regular file ``path``, read in chunks."""
    digest = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelBundle:
    """A verified bundle; construct it with :meth:`load`.

    ``digest`` is the bundle's ``sha256:<hex>`` (see the module docstring); a bundle made
    from a Manifest object rather than loaded gets the digest of its canonical JSON, the
    same text :class:`BundleWriter` writes.
    """

    def __init__(self, root: Path, manifest: Manifest, digest: str | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.digest = digest or bundle_digest(manifest.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, digest: str | None = None) -> ModelBundle:
        """Open and verify a bundle directory (manifest schema, paths, hashes, ONNX
        external data). ``digest`` pins the bundle: any other is refused (BundleError
        naming both digests) before its manifest is parsed."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} does not exist")
        manifest_path = root / MANIFEST_NAME
        if manifest_path.is_symlink() or not manifest_path.is_file():
            raise BundleError(f"{root} has no regular {MANIFEST_NAME}")
        raw = _read_regular(manifest_path, MAX_MANIFEST_BYTES)
        actual = bundle_digest(raw)
        if digest is not None:
            _refuse_other(root, actual, digest)
        manifest = Manifest.from_json(raw)
        bundle = cls(root.resolve(), manifest, actual)
        for artifact in manifest.artifacts:
            if artifact.format == "onnx":
                bundle._check_external_data(artifact, bundle._verified_bytes(artifact))
            else:
                bundle._verified_path(artifact)
        return bundle

    def check_digest(self, expected: str) -> None:
        """Refuse this bundle (BundleError naming both digests) unless it is ``expected``."""
        _refuse_other(self.root, self.digest, expected)

    def _verified_path(self, artifact: Artifact) -> Path:
        path = resolve_inside(self.root, artifact.path)
        if not path.is_file():
            raise BundleError(f"artifact {artifact.path!r} is missing from {self.root}")
        _check_hash(artifact, _hash_regular(path))
        return path

    def _verified_bytes(self, artifact: Artifact) -> bytes:
        """The bytes of an artifact, checked against the manifest (as loading reads them)."""
        path = resolve_inside(self.root, artifact.path)
        if not path.is_file():
            raise BundleError(f"artifact {artifact.path!r} is missing from {self.root}")
        data = _read_regular(path)
        _check_hash(artifact, sha256_bytes(data))
        return data

    def read_artifact(self, artifact: Artifact) -> bytes:
        """The artifact's bytes, hash-checked again at the moment of use."""
        data = _read_regular(resolve_inside(self.root, artifact.path))
        if sha256_bytes(data) != artifact.sha256:
            raise BundleError(f"artifact {artifact.path!r} changed after the bundle was opened")
        return data

    def _check_external_data(self, artifact: Artifact, data: bytes) -> None:
        """Every external-data file ONNX model ``artifact`` names must be a hashed artifact
        of this manifest, named by a plain relative path, and every (offset, length) must lie
        inside it; otherwise ONNX Runtime would read whatever file the model points at
        (path traversal: CVE-2022-25882, CVE-2024-27318; out of bounds: CVE-2024-27319)."""
        if b"location" not in data:  # each reference is a "location" entry, stored verbatim
            return
        listed = {a.path: a for a in self.manifest.artifacts}
        base = PurePosixPath(artifact.path).parent
        for tensor in _external_tensors(_parse_onnx(artifact, data)):
            entries = {e.key: e.value for e in tensor.external_data}
            where = f"artifact {artifact.path!r}, tensor {tensor.name!r}: external data"
            location = entries.get("location")
            if location is None:
                raise BundleError(f"{where} names no location")
            why = bundle_path_problem(location)
            if why is not None:
                raise BundleError(
                    f"{where} at {location!r} leaves the bundle directory or is not a plain "
                    f"relative path ({why})"
                )
            target = str(base / location)
            if target not in listed:
                raise BundleError(
                    f"{where} at {target!r} is not an artifact of the manifest: only files "
                    "listed with their sha256 may be read"
                )
            size = self._verified_path(listed[target]).stat().st_size
            offset, length = (entries.get(k, "") for k in ("offset", "length"))
            for name, value in (("offset", offset), ("length", length)):
                if value and not _DECIMAL.fullmatch(value):
                    raise BundleError(f"{where}: {name} {value!r} is not a byte count")
            start = int(offset or 0)
            end = start + int(length) if length else size
            if not start <= end <= size:
                raise BundleError(
                    f"{where}: bytes {start}-{end} lie outside {target!r} ({size} bytes)"
                )

    def artifact_path(self, artifact: Artifact) -> Path:
        """Absolute, verified path of an artifact (for tools that only take paths)."""
        return self._verified_path(artifact)


def _check_hash(artifact: Artifact, actual: str) -> None:
    if actual != artifact.sha256:
        raise BundleError(
            f"artifact {artifact.path!r} has sha256 {actual[:16]}..., the manifest says "
            f"{artifact.sha256[:16]}...: the bundle was modified or corrupted"
        )


def _parse_onnx(artifact: Artifact, data: bytes) -> Any:
    """The ModelProto of ``data``, external data not loaded (nothing outside is opened)."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise BundleError(
            f"artifact {artifact.path!r} is not a readable ONNX model: {exc}"
        ) from exc
    return model


def _external_tensors(model: Any) -> Iterator[Any]:
    """Every tensor that keeps its data in another file: initializers, sparse initializers
    and tensor attributes of the main graph, every subgraph (If/Loop/Scan bodies, at any
    depth), local functions and training graphs. Walked without recursion."""
    from onnx import TensorProto

    graphs = [model.graph]
    for info in model.training_info:
        graphs += [info.initialization, info.algorithm]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        tensors: list[Any] = []
        if graphs:
            graph = graphs.pop()
            tensors += graph.initializer
            for sparse in graph.sparse_initializer:
                tensors += [sparse.values, sparse.indices]
            nodes += graph.node
        else:
            for attribute in nodes.pop().attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors += attribute.tensors
                sparse_tensors = list(attribute.sparse_tensors)
                if attribute.HasField("sparse_tensor"):
                    sparse_tensors.append(attribute.sparse_tensor)
                for sparse in sparse_tensors:
                    tensors += [sparse.values, sparse.indices]
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs += attribute.graphs
        for tensor in tensors:
            if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
                yield tensor


class BundleWriter:
    """Collects artifacts into a directory and writes the manifest with their hashes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._artifacts: list[Artifact] = []
        self._discarded: list[str] = []

    @classmethod
    def extending(cls, bundle: ModelBundle) -> BundleWriter:
        """A writer that keeps ``bundle``'s artifacts, to add INT8 models or engines to it."""
        writer = cls(bundle.root)
        writer._artifacts = list(bundle.manifest.artifacts)
        return writer

    def add(
        self,
        relative: str,
        data: bytes,
        *,
        format: str,  # noqa: A002 - mirrors the manifest field name
        graph: str,
        precision: str = "fp32",
        target: str = "any",
        built_with: dict[str, str] | None = None,
    ) -> Artifact:
        """Write ``data`` to ``relative`` inside the bundle and record it."""
        path = self.root.joinpath(*check_relative(relative).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        artifact = Artifact(
            path=relative,
            sha256=sha256_bytes(data),
            format=format,
            graph=graph,
            precision=precision,
            target=target,
            built_with=dict(built_with or {}),
        )
        self._artifacts = [a for a in self._artifacts if a.path != relative] + [artifact]
        return artifact

    def discard(self, relative: str) -> None:
        """Drop ``relative`` from the bundle if it is there (a stale artifact of an earlier
        calibration). The record goes at once; the file only after the manifest no longer
        names it, so an interrupted writer never leaves a manifest pointing at nothing."""
        if any(a.path == relative for a in self._artifacts):
            self._artifacts = [a for a in self._artifacts if a.path != relative]
            self._discarded.append(relative)

    def finish(self, manifest: Manifest) -> ModelBundle:
        """Write ``manifest`` (with the collected artifacts) and return the verified bundle."""
        final = replace(manifest, artifacts=tuple(self._artifacts))
        # Written aside and renamed: a bundle being extended is never left half-written.
        staging = self.root / f".{MANIFEST_NAME}.tmp"
        staging.write_text(final.to_json(), encoding="utf-8")
        os.replace(staging, self.root / MANIFEST_NAME)
        for relative in self._discarded:
            self.root.joinpath(*check_relative(relative).parts).unlink(missing_ok=True)
        return ModelBundle.load(self.root)
