"""Data set adapters: read a corpus in its published layout into typed, labelled samples.

``read_dataset(path, format, labels=...)`` reads any registered layout and maps the data set's
label names onto a model's label order (``labels=manifest.labels``); ``Dataset.task`` and
``Dataset.y_true()`` feed :func:`edge_sdk.metrics.compute_metrics`. Only text is read (no
decoding, no torch). Formats (each module's docstring gives the layout and the mapping):

=========  =====================================================  ==========================
format     what ``path`` is                                       labels (own order)
=========  =====================================================  ==========================
fer2013    fer2013.csv (emotion, pixels, Usage)                   FER2013_LABELS (= face-fer7)
rafdb      basic/ or EmoLabel/list_patition_label.txt             RAFDB_LABELS (1..7)
affectnet  training.csv / validation.csv                          AFFECTNET_CLASSES (0..7)
caer-s     CAER-S root with train/ test/                          CAER_S_LABELS
emotic     train/val/test.csv of Tandon-A/emotic mat2py.py        EMOTIC_LABELS (multi-label)
meld       <split>_sent_emo.csv or its folder                     MELD_LABELS
iemocap    IEMOCAP_full_release, EmoEvaluation/ or one .txt       IEMOCAP_LABELS (IEMOCAP_SIX)
afew       root with Train/ Val/                                  AFEW_LABELS
folder     <root>/[<split>/]<class>/<file>                        sorted folder names
jsonl      one JSON object per line                               sorted names in the file
=========  =====================================================  ==========================

``labels=("valence", "arousal")`` reads the regression targets instead (affectnet, emotic,
iemocap, jsonl).
"""

from edge_sdk.datasets.base import (
    Dataset,
    DatasetFormat,
    ReadRequest,
    Sample,
    formats,
    get_format,
    read_dataset,
    register_format,
)
from edge_sdk.datasets.labels import SYNONYMS, canonical, map_labels

__all__ = [
    "SYNONYMS",
    "Dataset",
    "DatasetFormat",
    "ReadRequest",
    "Sample",
    "canonical",
    "formats",
    "get_format",
    "map_labels",
    "read_dataset",
    "register_format",
]
