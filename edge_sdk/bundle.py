"""ModelBundle: a directory holding ``manifest.json`` and the artifacts it lists.

Model files are untrusted input. A bundle is only opened after every artifact's sha256
matches the manifest, every path stays inside the bundle directory and no symlink is
involved; artifact bytes handed to a runtime are the bytes that were hashed, so a file
swapped between check and use is caught too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from edge_sdk.errors import BundleError
from edge_sdk.manifest import Artifact, Manifest

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


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


def check_relative(relative: str) -> PurePosixPath:
    """Refuse empty, absolute, backslashed or ``..`` paths before touching the filesystem."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or "\\" in relative or ".." in pure.parts:
        raise BundleError(f"artifact path {relative!r} leaves the bundle directory")
    return pure


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


class ModelBundle:
    """A verified bundle; construct it with :meth:`load`."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelBundle:
        """Open and verify a bundle directory (manifest schema, paths, hashes)."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} does not exist")
        manifest_path = root / MANIFEST_NAME
        if manifest_path.is_symlink() or not manifest_path.is_file():
            raise BundleError(f"{root} has no regular {MANIFEST_NAME}")
        manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
        bundle = cls(root.resolve(), manifest)
        for artifact in manifest.artifacts:
            bundle._verified_path(artifact)
        return bundle

    def _verified_path(self, artifact: Artifact) -> Path:
        path = resolve_inside(self.root, artifact.path)
        if not path.is_file():
            raise BundleError(f"artifact {artifact.path!r} is missing from {self.root}")
        actual = sha256_file(path)
        if actual != artifact.sha256:
            raise BundleError(
                f"artifact {artifact.path!r} has sha256 {actual[:16]}..., the manifest says "
                f"{artifact.sha256[:16]}...: the bundle was modified or corrupted"
            )
        return path

    def read_artifact(self, artifact: Artifact) -> bytes:
        """The artifact's bytes, hash-checked again at the moment of use."""
        path = resolve_inside(self.root, artifact.path)
        data = path.read_bytes()
        if sha256_bytes(data) != artifact.sha256:
            raise BundleError(f"artifact {artifact.path!r} changed after the bundle was opened")
        return data

    def artifact_path(self, artifact: Artifact) -> Path:
        """Absolute, verified path of an artifact (for tools that only take paths)."""
        return self._verified_path(artifact)


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
