"""Validation as ``check accuracy`` scores it, the device a run uses, and skipped samples.

The family's ``predict`` gives what its deployed pipeline reports (probabilities in the
model's label order, multi-label scores or valence/arousal) and
:func:`edge_sdk.metrics.compute_metrics`, the function ``check accuracy`` uses, scores them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.datasets.base import MULTILABEL, VALENCE_AROUSAL_TASK, Dataset
from edge_sdk.errors import DeviceError, InputError
from edge_sdk.metrics import Metrics, compute_metrics
from edge_sdk.models.families import DatasetTraining
from edge_sdk.training.data import BatchSource, batch_plan, group_units, loader
from edge_sdk.training.faces import UnreadableSampleError

DEVICES = ("cpu", "cuda")


def torch_device(name: str) -> Any:
    """``"cpu"`` or ``"cuda"`` as a torch device; DeviceError when torch sees no GPU."""
    import torch

    if name not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' asked for, but torch sees no CUDA GPU; use cpu")
    return torch.device(name)


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """The batch's tensors on ``device`` (other values unchanged)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def figures_of(metrics: Metrics) -> dict[str, float]:
    """Headline validation figures; valence/arousal adds the means over both dimensions."""
    figures = {k: float(v) for k, v in metrics.scores.items()}
    if metrics.task == VALENCE_AROUSAL_TASK:
        for name in ("rmse", "pcc", "ccc"):
            figures[f"{name}_mean"] = float(np.mean(getattr(metrics, name)))
    return figures


def truth_of(dataset: Dataset, indices: list[int]) -> np.ndarray:
    """Ground truth of the samples at ``indices``: class indices, multi-hot rows or V/A."""
    samples = [dataset.samples[i] for i in indices]
    if dataset.task == VALENCE_AROUSAL_TASK:
        return np.asarray([(s.valence, s.arousal) for s in samples], dtype=np.float64)
    if dataset.task == MULTILABEL:
        width = len(dataset.labels)
        return np.asarray([s.targets for s in samples], dtype=np.int8).reshape(-1, width)
    return np.asarray([s.label for s in samples], dtype=np.int64)


class Skips:
    """Unreadable samples: counted once each (they fail every epoch), fatal when strict."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.sources: dict[str, str] = {}

    def note(self, failures: list[tuple[str, str]]) -> None:
        """Record (source, reason) pairs; the first one raises when strict."""
        for source, reason in failures:
            if self.strict:
                raise UnreadableSampleError(source, f"{reason} (strict: no sample is skipped)")
            self.sources.setdefault(source, reason)


def evaluate(
    model: Any,
    training: DatasetTraining,
    config: Any,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "cpu",
    skips: Skips | None = None,
) -> Metrics:
    """Score ``model`` on ``dataset`` as the deployed pipeline would be scored.

    ``training.predict`` gives the pipeline's answers (probabilities over the model's labels
    or valence/arousal); :func:`edge_sdk.metrics.compute_metrics` scores them, the function
    ``check accuracy`` uses.
    """
    answers, truth = _answers(model, training, config, dataset, None,
                              batch_size=batch_size, workers=workers, device=device,
                              skips=skips)  # fmt: skip
    return _score(training, config, dataset, answers[0], truth)


def evaluate_settings(
    model: Any,
    training: DatasetTraining,
    config: Any,
    dataset: Dataset,
    main_metric: str,
    **options: Any,
) -> tuple[str, Any, Metrics, dict[str, float]]:
    """(best setting's name, its config, its metrics, main figure per setting) over the
    family's ``deploy_settings``; ties go to the first listed (the specification's default)."""
    settings = training.deploy_settings(config)  # type: ignore[misc]
    configs = list(settings.values())
    answers, truth = _answers(model, training, config, dataset, configs, **options)
    scored = [_score(training, c, dataset, a, truth) for c, a in zip(configs, answers, strict=True)]
    figures = {name: figures_of(m).get(main_metric, float("nan"))
               for name, m in zip(settings, scored, strict=True)}  # fmt: skip
    best = max(range(len(configs)), key=lambda i: (np.nan_to_num(list(figures.values())[i],
                                                                nan=-np.inf), -i))  # fmt: skip
    return list(settings)[best], configs[best], scored[best], figures


def _answers(
    model: Any,
    training: DatasetTraining,
    config: Any,
    dataset: Dataset,
    configs: list[Any] | None,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "cpu",
    skips: Skips | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Answers per config (one list without ``configs``) and the truth, batch by batch."""
    import torch

    where = torch_device(device)
    skips = skips or Skips(strict=False)
    model.eval()
    plan = batch_plan(len(dataset), batch_size, None, group_units(dataset.samples, training.group))
    source = BatchSource(training, config, dataset.samples, plan, False, (0,))
    per_config: list[list[np.ndarray]] = [[] for _ in configs or [None]]
    truths = []
    with torch.no_grad():
        for batch in loader(source, workers):
            skips.note(batch.failures)
            if batch.tensors is None:
                continue
            tensors = to_device(batch.tensors, where)
            if configs is None:
                found = [training.predict(model, tensors)]
            else:
                found = training.predict_settings(model, tensors, configs)  # type: ignore[misc]
            for answers, answer in zip(per_config, found, strict=True):
                answers.append(np.asarray(answer))
            truths.append(truth_of(dataset, batch.indices))
    if not truths:
        raise InputError(f"no validation sample of {dataset.path} could be read")
    return [np.concatenate(a) for a in per_config], np.concatenate(truths)


def _score(
    training: DatasetTraining, config: Any, dataset: Dataset, answers: np.ndarray, truth: Any
) -> Metrics:
    return compute_metrics(dataset.task, truth, answers, labels=training.labels(config))
