"""Audio route: a clip's WAV (fused with its video where the audio-video family has a face
encoder to give per-frame features)."""

from __future__ import annotations

from edge_sdk.checks.accuracy.routing import Answer, Route, media_of, pipeline_of
from edge_sdk.datasets.base import Sample
from edge_sdk.errors import InputError


def answer_audio(route: Route, sample: Sample) -> Answer:
    """The ``audio`` route: the clip emotion of the audio-video family."""
    wav, video = media_of(sample)
    if wav is None:
        raise InputError(
            "no .wav for this clip (audio is read from WAV files: extract it beside the "
            "clip, e.g. ffmpeg -i clip.avi -ac 1 -ar 16000 clip.wav)"
        )
    # the fused graph needs per-frame face features from a face family of the right width
    encoder = getattr(pipeline_of(route.recognizer, "audio"), "encoder", None)
    use_video = video if encoder is not None else None
    return dict(route.recognizer.predict(audio=wav, video=use_video).audio.probabilities)
