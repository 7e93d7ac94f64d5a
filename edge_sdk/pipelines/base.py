"""The Pipeline protocol, and the one constructor prologue every pipeline class shares.

A pipeline runs one bundle. It is built as ``cls(bundle, device, backend=, precision=,
wrap=, **options)`` and opens the bundle's graphs then, once (ORT session creation is not
safe to race, so never per call); it declares the ``modality`` of ``Recognizer.predict`` it
serves and which backend/precision runs each graph, and ``close`` frees its sessions, as a
Polygraphy runner's ``deactivate`` does. :class:`GraphPipeline` holds that prologue, so a
pipeline class writes only what is its own, in three hooks:

* ``configure(manifest)``: read the bundle's config; a BundleError here comes before any
  graph is opened;
* ``graph_names(manifest)``: the graphs to open (default: the class's ``opens``);
* ``start(bundle, backend)``: set up what needs the open sessions; when it fails, the
  sessions are closed again.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from edge_sdk.bundle import ModelBundle
from edge_sdk.device import DeviceInfo
from edge_sdk.manifest import Manifest
from edge_sdk.pipelines.common import Sessions, Wrap, describe, open_graphs
from edge_sdk.preprocess.audio import MAX_AUDIO_SECONDS
from runtimes.base import Closing, Session


@runtime_checkable
class Pipeline(Protocol):
    """What the Recognizer needs of every registered pipeline class's instances: the
    ``predict`` argument it serves, its bundle's family and labels, the sessions of its
    graphs (by graph name) and which backend/precision runs each, and ``close``."""

    modality: str
    family: str
    labels: tuple[str, ...]
    sessions: dict[str, Session]
    backends: dict[str, str]

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class GraphPipeline(Closing):
    """Opens a bundle's graphs for a pipeline and closes them (module docs: the hooks).

    ``options`` names the Recognizer options (besides ``wrap``) the constructor accepts.
    """

    modality = ""
    options: tuple[str, ...] = ()
    opens: tuple[str, ...] = ()

    def __init__(self, bundle: ModelBundle, device: DeviceInfo, backend: str | None = None,
                 precision: str | None = None, wrap: Wrap | None = None) -> None:
        """Open every graph once; ``wrap(graph_name, session)`` may decorate each session,
        e.g. to record the tensors each graph sees for INT8 calibration."""
        manifest = bundle.manifest
        self.family = manifest.family
        self.labels = manifest.labels
        self.digest = bundle.digest  # a paired pipeline checks it (av-fbp's face encoder)
        self.configure(manifest)
        names = self.graph_names(manifest)
        self.sessions: Sessions = open_graphs(
            bundle, names, device, backend, precision, wrap, self.thread_hints()
        )
        self.graphs = {name: manifest.graph(name) for name in names}
        self.backends = describe(self.sessions)
        try:
            self.start(bundle, backend)
        except BaseException:
            self.sessions.close()
            raise

    def configure(self, manifest: Manifest) -> None:
        """Read the bundle's config before any graph is opened (nothing by default)."""

    def graph_names(self, manifest: Manifest) -> tuple[str, ...]:
        """The graphs to open (``opens``)."""
        return self.opens

    def thread_hints(self) -> dict[str, int] | None:
        """Per-graph thread-count hints (``Backend.open``); None: the runtime's default."""
        return None

    def start(self, bundle: ModelBundle, backend: str | None) -> None:
        """Set up what needs the open sessions (nothing by default)."""

    def close(self) -> None:
        """Close every session this pipeline opened; its calls then raise ClosedError."""
        self.sessions.close()


class AudioPipeline(GraphPipeline):
    """A pipeline that reads audio. ``max_audio_seconds`` (a constructor argument and an
    attribute) bounds a clip before any resampling, so a hostile rate or length is refused
    before the front-end allocates for it."""

    def __init__(
        self, *args: Any, max_audio_seconds: float = MAX_AUDIO_SECONDS, **kwargs: Any
    ) -> None:
        self.max_audio_seconds = max_audio_seconds
        super().__init__(*args, **kwargs)
