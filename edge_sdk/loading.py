"""The arguments of :func:`edge_sdk.api.load` checked and resolved before any bundle is
opened: executor options, bundle sources and digest pins (one per bundle)."""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_sdk.bundle import ModelBundle
from edge_sdk.errors import BundleError, InputError

# The Recognizer's logger: the untrained-weights warning is the Recognizer's to give.
log = logging.getLogger("edge_sdk.api")

BundleSource = str | os.PathLike[str] | ModelBundle


def check_executor_options(workers: Any, max_queue: Any, queue_timeout: Any) -> None:
    """Refuse executor settings that cannot work, as an InputError naming the value, before
    any bundle is opened or exported (the executor's own check would come after that)."""
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(max_queue, bool) or not isinstance(max_queue, numbers.Integral) or max_queue < 0:
        raise InputError(f"max_queue must be an integer >= 0, got {max_queue!r}")
    if queue_timeout is not None and (
        isinstance(queue_timeout, bool)
        or not isinstance(queue_timeout, numbers.Real)
        or not 0 <= queue_timeout < math.inf
    ):
        raise InputError(
            f"queue_timeout must be None (wait as long as it takes) or finite seconds >= 0, "
            f"got {queue_timeout!r}"
        )


def bundle_sources(bundle: Any) -> list[BundleSource]:
    """``load``'s bundle argument as a list, every item a path or an opened bundle."""
    kinds = (str, os.PathLike, ModelBundle)
    if isinstance(bundle, kinds):
        return [bundle]
    if isinstance(bundle, (bytes, bytearray, Mapping)) or not isinstance(bundle, Iterable):
        raise InputError(
            "load() takes a bundle directory (str or os.PathLike), a ModelBundle or a list "
            f"of them; got {type(bundle).__name__}"
        )
    sources = list(bundle)
    for item in sources:
        if not isinstance(item, kinds):
            raise InputError(
                "load() takes bundle directories (str or os.PathLike) or ModelBundles; got "
                f"{type(item).__name__} in the list"
            )
    return sources


def digest_pins(digest: str | Sequence[str | None] | None, count: int) -> list[str | None]:
    """``load``'s digest argument as one pin (or None) per bundle."""
    if digest is None:
        return [None] * count
    pins = [digest] if isinstance(digest, str) else list(digest)
    if len(pins) != count:
        raise InputError(
            f"load() got {len(pins)} digests for {count} bundles: give one digest per bundle "
            "(None where any will do)"
        )
    return pins


def open_pinned(source: BundleSource, pin: str | None) -> ModelBundle:
    """Open ``source``; with ``pin``, refuse it (BundleError) unless its digest is ``pin``."""
    if not isinstance(source, ModelBundle):
        return ModelBundle.load(Path(source), digest=pin)
    if pin is not None:
        source.check_digest(pin)
    return source


def opened_bundles(bundles: Any) -> list[ModelBundle]:
    """The Recognizer's ``bundles`` argument as a non-empty list of opened bundles."""
    if isinstance(bundles, ModelBundle):
        opened = [bundles]
    elif isinstance(bundles, Iterable) and not isinstance(bundles, (str, bytes, Mapping)):
        opened = list(bundles)
    else:
        raise InputError(
            f"Recognizer takes an opened ModelBundle or a list of them, got "
            f"{type(bundles).__name__} (edge_sdk.load() opens bundle directories)"
        )
    if not opened:
        raise BundleError("a Recognizer needs at least one bundle")
    for item in opened:
        if not isinstance(item, ModelBundle):
            raise InputError(
                f"Recognizer takes opened ModelBundles, got {type(item).__name__} "
                "(edge_sdk.load() opens bundle directories)"
            )
    return opened


def refuse_untrained(bundles: Sequence[ModelBundle], allow: bool) -> None:
    """BundleError for a bundle of random weights, unless ``allow`` (then a warning).

    Why: such a bundle answers confidently and means nothing (every face got the same
    valence/arousal); sizes and latency are all it is good for.
    """
    untrained = [f"{b.manifest.family} ({b.root})" for b in bundles if b.manifest.untrained]
    if not untrained:
        return
    if not allow:
        raise BundleError(
            f"{', '.join(untrained)}: untrained (random) weights, exported with --untrained; "
            "its predictions mean nothing. Train it (edge-sdk train) and export with "
            "--checkpoint, or pass allow_untrained=True / --allow-untrained for latency work"
        )
    log.warning("running untrained (random) weights: %s", ", ".join(untrained))
