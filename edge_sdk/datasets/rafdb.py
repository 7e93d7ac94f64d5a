"""RAF-DB basic emotion subset (Li et al. 2017): a partition list and aligned faces.

Published layout (the ``basic/`` folder)::

    basic/EmoLabel/list_patition_label.txt     # sic: "patition"; "<image> <label>" per line
    basic/Image/aligned/<stem>_aligned.jpg     # 100 x 100 aligned faces
    basic/Image/original/<image>

Each list line is ``train_00001.jpg 5``: the image name (``train_*`` or ``test_*``, which is
the split) and a label 1..7 = :data:`RAFDB_LABELS` (surprise, fear, disgust, happiness,
sadness, anger, neutral; the order of the ``face-expclip`` family's default vocabulary).
Samples point at the aligned face ``Image/aligned/<stem>_aligned.jpg``; ``media_root``
replaces the ``Image/aligned`` folder. ``path`` may be the ``basic/`` folder or the list file;
``split`` is "train" or "test".
"""

from __future__ import annotations

from pathlib import Path

from edge_sdk.datasets._io import integer, require_file, text_lines
from edge_sdk.datasets.base import DatasetFormat, ReadRequest, Sample, register_format
from edge_sdk.errors import InputError

RAFDB_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
RAFDB_SPLITS = ("train", "test")
LIST_FILE = Path("EmoLabel") / "list_patition_label.txt"
ALIGNED = Path("Image") / "aligned"


def _locate(path: Path) -> tuple[Path, Path]:
    """(list file, the ``basic/`` root) from either of them."""
    if path.is_dir():
        return require_file(path / LIST_FILE, "RAF-DB partition list"), path
    require_file(path, "RAF-DB partition list")
    root = path.parent.parent if path.parent.name.lower() == "emolabel" else path.parent
    return path, root


def _read_rafdb(request: ReadRequest) -> list[Sample]:
    listing, root = _locate(request.path)
    wanted = None if request.split is None else request.split.strip().lower()
    if wanted is not None and wanted not in RAFDB_SPLITS:
        raise InputError(f"RAF-DB split must be one of {list(RAFDB_SPLITS)}, got {request.split!r}")
    images = request.media_root or root / ALIGNED
    samples = []
    for number, text in enumerate(text_lines(listing, "RAF-DB partition list"), start=1):
        if not text.strip():
            continue
        where = f"{listing}:{number}"
        fields = text.split()
        if len(fields) != 2:
            raise InputError(f"{where}: expected '<image> <label>', got {text.strip()!r}")
        name, label = fields
        split = name.split("_", 1)[0].lower()
        if split not in RAFDB_SPLITS or "_" not in name:
            raise InputError(f"{where}: image name {name!r} does not start with train_ or test_")
        code = integer(label, "label", where)
        if not 1 <= code <= len(RAFDB_LABELS):
            raise InputError(f"{where}: label {code} outside 1..{len(RAFDB_LABELS)}")
        if wanted is not None and split != wanted:
            continue
        aligned = images / f"{Path(name).stem}_aligned{Path(name).suffix or '.jpg'}"
        samples.append(
            Sample(paths=(aligned,), source=where, native=RAFDB_LABELS[code - 1], split=split)
        )
    return samples


RAFDB = register_format(
    DatasetFormat(
        name="rafdb",
        description="RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/",
        read=_read_rafdb,
        labels=RAFDB_LABELS,
    )
)
