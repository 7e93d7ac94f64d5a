"""What ``verify`` ran: every runner's outputs over the same feeds, saved and reloadable.

Like Polygraphy's ``RunResults``: the run step (:func:`edge_sdk.checks.verify.run_plan`)
records the feeds and each runner's outputs; the compare step
(:func:`edge_sdk.checks.compare.compare_results`) judges them later, here or on another
machine. A device can run a bundle once and the figures be recomputed under other
tolerances without running it again.

Saved form: one ``.npz`` read without pickle, every array under a key ``a<N>`` and a
``meta`` entry holding UTF-8 JSON that names the graphs, feed sets, runners and which
array is which (names never become keys, so any ONNX tensor name is safe).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.checks.feeds import FeedSet
from edge_sdk.errors import InputError

FORMAT = "edge-sdk-run-results"
VERSION = 1
META_KEY = "meta"

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Skipped:
    """A candidate that was not compared, and why."""

    graph: str
    backend: str
    precision: str
    artifact: str
    reason: str


@dataclass(frozen=True)
class RunnerOutputs:
    """One runner (backend + artifact) of one graph over the graph's feed sets.

    Attributes:
        outputs: per feed set, per run of it, every output by name; empty when it failed.
        error: why the runner could not open or run (then nothing was compared).
    """

    backend: str
    precision: str
    artifact: str
    outputs: tuple[tuple[Outputs, ...], ...] = ()
    error: str | None = None

    @property
    def name(self) -> str:
        """``backend/precision``."""
        return f"{self.backend}/{self.precision}"

    def describe(self) -> str:
        """``backend/precision (artifact)``, as results name references."""
        return f"{self.name} ({self.artifact})"


@dataclass(frozen=True)
class GraphRuns:
    """One graph: the feeds, the reference's outputs and each candidate's.

    When the reference failed, no candidate was run (``candidates`` is empty).
    """

    graph: str
    feeds: tuple[FeedSet, ...]
    reference: RunnerOutputs
    candidates: tuple[RunnerOutputs, ...] = ()


@dataclass(frozen=True)
class RunResults:
    """Everything one verify run produced before judging; :meth:`save` / :meth:`load`.

    Attributes:
        bundle: ``family/variant``; root: its directory; device: the machine it ran on.
        graphs: per graph, the feeds and every runner's outputs.
        skipped: candidates not run, and why; errors: graphs that had no reference.
    """

    bundle: str
    root: str
    device: str
    graphs: tuple[GraphRuns, ...]
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[str, ...] = ()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every feed and output to ``path`` (an ``.npz``; see the module doc)."""
        arrays: dict[str, np.ndarray] = {}

        def put(array: np.ndarray) -> str:
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(array)
            return key

        meta = {
            "format": FORMAT,
            "version": VERSION,
            "bundle": self.bundle,
            "root": self.root,
            "device": self.device,
            "skipped": [asdict(s) for s in self.skipped],
            "errors": list(self.errors),
            "graphs": [_graph_meta(g, put) for g in self.graphs],
        }
        arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        target = Path(path)
        with target.open("wb") as handle:  # a file object: numpy adds no ".npz" suffix
            np.savez(handle, **arrays)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResults:
        """Read what :meth:`save` wrote; an InputError says what is wrong with the file."""
        source = Path(path)
        try:
            with np.load(source, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{source} is not a readable run-results .npz: {exc}") from exc
        try:
            meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{source} has no readable run-results index ({exc!r})") from exc
        if not isinstance(meta, dict) or (meta.get("format"), meta.get("version")) != (
            FORMAT,
            VERSION,
        ):
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise InputError(f"{source} holds {found!r}, not {FORMAT} version {VERSION}")
        try:
            return cls(
                bundle=meta["bundle"],
                root=meta["root"],
                device=meta["device"],
                graphs=tuple(_graph_from(g, arrays) for g in meta["graphs"]),
                skipped=tuple(Skipped(**s) for s in meta["skipped"]),
                errors=tuple(meta["errors"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: run results are incomplete or damaged ({exc!r})") from exc


def _graph_meta(runs: GraphRuns, put: Any) -> dict[str, Any]:
    def named(values: dict[str, np.ndarray]) -> dict[str, str]:
        return {name: put(array) for name, array in values.items()}

    def runner(r: RunnerOutputs) -> dict[str, Any]:
        return {
            "backend": r.backend,
            "precision": r.precision,
            "artifact": r.artifact,
            "error": r.error,
            "outputs": [[named(run) for run in per_feed] for per_feed in r.outputs],
        }

    feeds = [
        {
            "graph": fs.graph,
            "size": fs.size,
            "dims": dict(fs.dims),
            "capped": fs.capped,
            "source": fs.source,
            "runs": [named(run) for run in fs.runs],
            "labels": named(fs.labels),
        }
        for fs in runs.feeds
    ]
    return {
        "graph": runs.graph,
        "feeds": feeds,
        "reference": runner(runs.reference),
        "candidates": [runner(c) for c in runs.candidates],
    }


def _graph_from(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GraphRuns:
    def named(keys: dict[str, str]) -> dict[str, np.ndarray]:
        return {name: arrays[key] for name, key in keys.items()}

    def runner(r: dict[str, Any]) -> RunnerOutputs:
        outputs = tuple(tuple(named(run) for run in per_feed) for per_feed in r["outputs"])
        return RunnerOutputs(r["backend"], r["precision"], r["artifact"], outputs, r["error"])

    feeds = tuple(
        FeedSet(
            graph=f["graph"],
            size=f["size"],
            dims={k: int(v) for k, v in f["dims"].items()},
            runs=tuple(named(run) for run in f["runs"]),
            capped=bool(f["capped"]),
            labels=named(f["labels"]),
            source=f["source"],
        )
        for f in meta["feeds"]
    )
    return GraphRuns(
        meta["graph"],
        feeds,
        runner(meta["reference"]),
        tuple(runner(c) for c in meta["candidates"]),
    )
