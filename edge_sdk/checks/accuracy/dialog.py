"""Dialog route: consecutive utterances of one dialog (at most the family's
``max_utterances``) sent together, one answer per utterance."""

from __future__ import annotations

from collections.abc import Sequence

from edge_sdk.checks.accuracy.routing import Answer, Route, media_of, pipeline_of
from edge_sdk.datasets.base import Sample


def chunk_size(route: Route) -> int:
    """The most utterances the dialog family scores in one call."""
    pipeline = pipeline_of(route.recognizer, "dialog")
    return max(1, int(getattr(pipeline, "max_utterances", None) or 1 << 30))


def answer_dialog(route: Route, samples: Sequence[Sample]) -> list[Answer]:
    """The ``dialog`` route: one answer per utterance of the chunk, in order."""
    from edge_sdk.pipelines.dialog import Utterance

    utterances = []
    for sample in samples:
        wav, video = media_of(sample)
        utterances.append(
            Utterance(text=sample.text, audio=wav, frames=video, speaker=sample.speaker)
        )
    result = route.recognizer.predict(dialog=utterances).dialog
    return [dict(u.probabilities) for u in result.utterances]
