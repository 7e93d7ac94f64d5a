"""check_accuracy(): a labelled data set through a Recognizer, scored as each community reports.

The data set is read by :func:`edge_sdk.datasets.read_dataset` in its own label order; every
sample goes through the ``predict`` modality that fits it, and the answers are scored by
:func:`edge_sdk.metrics.compute_metrics` (WAR/UAR, macro/weighted F1 and the confusion matrix
for single-label sets; AP per class and mAP for multi-label ones; RMSE/PCC/CCC for
valence/arousal). The result is a structured object; nothing is printed.

Which modality (``AccuracyResult.modality``):

* ``dialog``: every sample has a ``dialog_id`` (MELD, IEMOCAP, JSONL) and a dialog family is
  loaded. Dialogs are grouped by :meth:`Dataset.dialogs` in utterance order and sent as
  ``predict(dialog=[Utterance(text, audio, frames, speaker), ...])``; a dialog longer than the
  family's ``max_utterances`` is scored in consecutive chunks of that length.
* images (``Sample.image``, FER2013's inline 48 x 48 grey face, or an image file):
  ``scene`` for CAER-S / EMOTIC and multi-label sets when a scene family is loaded, otherwise
  ``face``. ``face`` takes the largest detected face, or, when the sample has a face box
  (AffectNet, JSONL ``box``), the detected face whose centre lies in that box with the best
  overlap. ``scene`` passes the sample's box as the caller's box: EMOTIC's is the body box
  (its head box is the detected face whose centre lies inside it, else the head implied by
  the body box under the scene family's documented expansion, counted in ``notes``),
  AffectNet's a head box; without a box the largest detected head is taken.
* clips (audio or video files): ``audio`` with an audio-video family (the sample's ``.wav``,
  else ``<clip stem>.wav`` beside the video, plus the video when a face family gives the
  per-frame features the audio-video family fuses),
  else ``video``: per-frame faces with the largest face of each frame, probabilities
  (or valence/arousal) averaged over the frames that have one.

``faces="given"`` skips the detector for ``face``: the face heads run on the sample's box, or
on the whole image (FER2013 and RAF-DB aligned crops are already faces; published FER2013
figures feed the whole 48 x 48 image), each family applying its own crop rule.

Labels are matched by name (:func:`edge_sdk.datasets.labels.map_labels`: case and synonyms,
so MELD's "joy" meets "happy"). A data set label with samples that the bundle lacks is an
:class:`InputError` before anything runs, unless ``label_map`` merges it (``{"contempt":
"disgust"}``, a bundle label) or drops it (``None``), or ``unmapped="skip"`` leaves it out.
The scored labels are the data set's, in its order, followed by the bundle's labels the data
set lacks, so a prediction of those counts as wrong rather than being dropped.

A sample for which the modality finds no face (or no person) is a miss: single-label sets
score it as the extra class ``"(no face)"`` (a column of the confusion matrix, never a true
class, so it lowers WAR, UAR and recall; macro F1 is averaged over the real classes only),
multi-label sets as all-zero scores; valence/arousal cannot score it and leave it out. Every
miss is counted in ``no_face``. A sample whose input cannot be read (an ``InputError``:
undecodable image, audio outside the exported length) is treated the same way and counted in
``failed`` with its message; if every sample fails, the first message is raised.

The recognizer may be a server's (:func:`edge_sdk.connect`): every prediction then runs there,
``concurrency`` requests at a time (samples or dialog chunks; answers keep the data set's
order), and the result reports the throughput. ``faces="given"`` runs the face heads in this
process and needs a local recognizer; EMOTIC's head boxes come from the body box when the
detector is not in this process (counted in ``notes``).

Modules: :mod:`.core` (check_accuracy: jobs, scoring), :mod:`.routing` (which route, and the
:class:`Route` each route's answer function receives), one module per route (:mod:`.face`
with video, :mod:`.scene`, :mod:`.audio`, :mod:`.dialog`), :mod:`.labels` (label space,
subsets) and :mod:`.result` (AccuracyResult, thresholds, summary lines).
"""

from edge_sdk.checks.accuracy.core import MISS_LABEL, check_accuracy
from edge_sdk.checks.accuracy.face import pick_box
from edge_sdk.checks.accuracy.labels import LabelSpace, label_space
from edge_sdk.checks.accuracy.result import (
    THRESHOLDS,
    AccuracyResult,
    check_thresholds,
    default_title,
    judge,
    parse_label_map,
    summary_rows,
)
from edge_sdk.checks.accuracy.routing import (
    FACE_MODES,
    TASK_CHOICES,
    bundle_labels,
    choose_modality,
    dataset_labels_for,
    open_recognizer,
)
from edge_sdk.checks.accuracy.scene import head_from_body

__all__ = [
    "FACE_MODES",
    "MISS_LABEL",
    "TASK_CHOICES",
    "THRESHOLDS",
    "AccuracyResult",
    "LabelSpace",
    "bundle_labels",
    "check_accuracy",
    "check_thresholds",
    "choose_modality",
    "dataset_labels_for",
    "default_title",
    "head_from_body",
    "judge",
    "label_space",
    "open_recognizer",
    "parse_label_map",
    "pick_box",
    "summary_rows",
]
