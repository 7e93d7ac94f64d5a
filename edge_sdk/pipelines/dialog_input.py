"""A dialog's input: the :class:`Utterance` (text, audio, frames, speaker) and the JSONL dialog
file, whose media paths must stay inside the file's folder unless allowed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.errors import InputError
from edge_sdk.preprocess.audio import AudioInput
from edge_sdk.preprocess.video import VideoInput

MAX_DIALOG_BYTES = 16 * 1024 * 1024  # a dialog file is text and paths: refuse larger ones
MAX_DIALOG_LINES = 10_000  # utterance lines (far above any graph's max_utterances)


@dataclass(frozen=True)
class Utterance:
    """One turn of a dialog; at least one of text, audio and frames must be given.

    Args:
        text: what was said.
        audio: WAV path/bytes, :class:`~edge_sdk.preprocess.audio.Audio` or (samples, rate).
        frames: video of the utterance: a file, a (T, H, W, C) array or a list of images.
        speaker: who spoke (carried into the result).
    """

    text: str | None = None
    audio: AudioInput | None = None
    frames: VideoInput | None = None
    speaker: str | None = None

    @classmethod
    def from_value(
        cls, value: Any, index: int, base: Path | None = None, *, allow_outside: bool = False
    ) -> Utterance:
        """An Utterance, a mapping with those keys (``video`` = ``frames``) or a string.

        File paths in a mapping are resolved against ``base`` (the JSONL's folder) and, unless
        ``allow_outside``, must stay inside it once ``..`` and symlinks are resolved: a dialog
        file from elsewhere must not make the SDK read any file on the machine.
        """
        if isinstance(value, Utterance):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if not isinstance(value, Mapping):
            raise InputError(
                f"utterance {index}: expected an Utterance, a mapping or a string, "
                f"got {type(value).__name__}"
            )
        unknown = sorted(set(value) - {"text", "audio", "frames", "video", "speaker"})
        if unknown:
            raise InputError(f"utterance {index}: unknown keys {unknown}")
        if "frames" in value and "video" in value:
            raise InputError(f"utterance {index}: give frames or video, not both")

        def resolve_path(item: Any, key: str) -> Any:
            if base is None or not isinstance(item, str):
                return item
            path = base / item
            if not allow_outside:
                root = base.resolve()
                if not path.resolve().is_relative_to(root):
                    raise InputError(
                        f"utterance {index}: {key} {item!r} lies outside the dialog's folder "
                        f"{root} (allow it explicitly: allow_outside=True / "
                        f"--allow-outside-media)"
                    )
            return str(path)

        def resolve(key: str) -> Any:
            item = value.get(key)
            if isinstance(item, list):  # a list of frame files: one level, never nested
                return [resolve_path(v, key) for v in item]
            return resolve_path(item, key)

        text = value.get("text")
        if text is not None and not isinstance(text, str):
            raise InputError(f"utterance {index}: text must be a string")
        speaker = value.get("speaker")
        if speaker is not None and (
            isinstance(speaker, bool) or not isinstance(speaker, (str, int, float))
        ):
            raise InputError(f"utterance {index}: speaker must be a string or a number")
        return cls(
            text=text,
            audio=resolve("audio"),
            frames=resolve("frames" if "frames" in value else "video"),
            speaker=None if speaker is None else str(speaker),
        )

    def modalities(self) -> tuple[bool, bool, bool]:
        """Presence of (text, audio, visual)."""
        has_text = self.text is not None and bool(self.text.strip())
        return has_text, self.audio is not None, self.frames is not None



def read_dialog_jsonl(path: str | Path, *, allow_outside: bool = False) -> list[Utterance]:
    """A dialog file: one JSON object per line (``text``, ``audio``, ``frames``/``video``,
    ``speaker``); blank lines are skipped.

    Media paths are relative to the file and must lie inside its folder unless
    ``allow_outside`` (see :meth:`Utterance.from_value`). Files over ``MAX_DIALOG_BYTES`` or
    ``MAX_DIALOG_LINES`` lines, bytes that are not UTF-8 and lines nested too deeply to parse
    are InputErrors naming the file (and line).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such dialog file")
    if file.stat().st_size > MAX_DIALOG_BYTES:
        raise InputError(f"{file}: larger than {MAX_DIALOG_BYTES} bytes; not a dialog file")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{file}:{line}: not UTF-8 text ({exc.reason})") from exc
    utterances = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(utterances) == MAX_DIALOG_LINES:
            raise InputError(f"{file}: more than {MAX_DIALOG_LINES} utterance lines")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}:{number}: not valid JSON ({exc.msg})") from exc
        except RecursionError as exc:
            raise InputError(f"{file}:{number}: JSON nested too deeply") from exc
        except ValueError as exc:  # e.g. an integer longer than Python converts
            raise InputError(f"{file}:{number}: unreadable JSON value ({exc})") from exc
        utterances.append(
            Utterance.from_value(value, len(utterances), file.parent, allow_outside=allow_outside)
        )
    if not utterances:
        raise InputError(f"{file}: a dialog needs at least one utterance (got 0)")
    return utterances
