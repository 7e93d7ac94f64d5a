"""Commands that make weights: ``train`` (generated data or a data set in its published
layout) and ``import face-expclip`` (the released CLIP and Exp-CLIP head files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli.base import app, console, errors, fail
from edge_sdk.cli.common import check_writable
from edge_sdk.errors import EdgeSDKError, InputError

import_app = typer.Typer(
    help="Import released weights as a bundle (strict key and shape checks, no pickle).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

Data = Annotated[
    str,
    typer.Option(
        help="'synthetic' (generated, learnable) or FORMAT:PATH[#SPLIT], e.g. rafdb:/data/basic"
        " (formats as `check accuracy --format`)."
    ),
]
Val = Annotated[
    str | None, typer.Option(help="Validation set FORMAT:PATH[#SPLIT]; overrides --val-split.")
]
ValSplit = Annotated[
    float,
    typer.Option(min=0.0, max=0.9, help="Fraction of --data held out (seeded, by sample id)."),
]
Workers = Annotated[int, typer.Option(min=0, help="Data loading processes (0: inline).")]
Resume = Annotated[Path | None, typer.Option(help="Continue from a checkpoint train wrote.")]
Strict = Annotated[bool, typer.Option(help="Fail on an unreadable sample instead of skipping.")]
TrainDevice = Annotated[str, typer.Option(help="cpu or cuda.")]
Teacher = Annotated[
    Path | None, typer.Option(help="Teacher embeddings .npz (face-expclip): ids, embeddings.")
]
FaceCaf = Annotated[
    Path | None,
    typer.Option(help="av-fbp: the face-caf bundle whose per-frame features it trains on and is "
                 "deployed beside (its digest is recorded; another one is refused at load)."),
]
LabelMap = Annotated[
    list[str] | None,
    typer.Option(help="DATASET_LABEL=MODEL_LABEL (empty right side: leave it out); repeat. "
                 "As `check accuracy --label-map`."),
]
Unmapped = Annotated[
    str, typer.Option(help="A data set label the model lacks: error, or skip (counted).")
]
InitFrom = Annotated[
    str | None,
    typer.Option(help="Start weights: a checkpoint of this family, or 'fer' (face-fer7)."),
]


def train(
    family: Annotated[str, typer.Argument(help="Family trained with edge-sdk's code.")],
    out: Annotated[Path, typer.Option(help="Checkpoint file to write (.safetensors).")],
    config: Annotated[str, typer.Option(help="Size (tiny, edge) or a JSON file.")] = "tiny",
    data: Data = "synthetic",
    val: Val = None,
    val_split: ValSplit = 0.1,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    batches: Annotated[int, typer.Option(min=1, help="Batches per epoch (synthetic).")] = 8,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Workers = 0,
    resume: Resume = None,
    strict: Strict = False,
    device: TrainDevice = "cpu",
    teacher: Teacher = None,
    init_from: InitFrom = None,
    face_caf: FaceCaf = None,
    label_map: LabelMap = None,
    unmapped: Unmapped = "error",
) -> None:
    """Train a family and write a checkpoint that `export` accepts."""
    check_writable(out, "--out", directory=False)
    if face_caf is not None:
        config = _paired_config(family, config, face_caf)
    if data == "synthetic":
        _train_synthetic(family, out, config, epochs, batches, batch_size, lr, seed)
        return
    options = dict(val=val, val_split=val_split, config=config, epochs=epochs,
                   batch_size=batch_size, lr=lr, workers=workers, resume=resume, strict=strict,
                   device=device, teacher=teacher, init_from=init_from, seed=seed,
                   label_map=_label_map(label_map), unmapped=unmapped)  # fmt: skip
    _train_on_data(family, out, data, epochs, options)


def _label_map(items: list[str] | None) -> dict[str, str | None]:
    """``--label-map`` values, parsed as ``check accuracy`` parses them."""
    from edge_sdk.checks.accuracy.result import parse_label_map

    try:
        return parse_label_map(items)
    except EdgeSDKError as exc:
        raise fail(exc) from exc


def _paired_config(family: str, config: str, face_caf: Path) -> Any:
    """av-fbp's config bound to the face-caf bundle it will be deployed beside."""
    if family != "av-fbp":
        raise fail(InputError("--face-caf applies to av-fbp only"))
    try:
        from edge_sdk.models.av_fbp.datasets import pair_face_encoder

        return pair_face_encoder(config, face_caf)
    except ImportError as exc:
        raise _torch_needed(exc) from exc
    except EdgeSDKError as exc:
        raise fail(exc) from exc


def _torch_needed(exc: ImportError) -> typer.Exit:
    return fail(InputError(f"train needs torch: pip install 'edge-sdk[torch]' ({exc})"))


def _train_synthetic(
    family: str, out: Path, config: Any, epochs: int, batches: int, batch_size: int,
    lr: float, seed: int,
) -> None:  # fmt: skip
    """The family's generated, learnable data (tests, sizes, smoke runs)."""
    from edge_sdk.reports.progress import progress_steps

    try:
        from edge_sdk.models.families import get_family
        from edge_sdk.models.training import resolve_config, save_checkpoint, synthetic_batches
        from edge_sdk.models.training import train as run_training
    except ImportError as exc:
        raise _torch_needed(exc) from exc
    try:
        spec = get_family(family)
        if spec.recipe is None:
            raise InputError(
                f"{family} imports pretrained weights; fine-tune it on a data set "
                "(--data FORMAT:PATH)"
            )
        resolved = resolve_config(spec.recipe, config)
        generated = synthetic_batches(spec.recipe, resolved, seed, batch_size, batches)
        with progress_steps(f"train {family}", errors, lines=True) as report:
            model, losses = run_training(
                spec, resolved, generated, epochs=epochs, lr=lr, seed=seed,
                # one stage per epoch: off a terminal, one line per epoch
                on_step=lambda step, loss: report(
                    step, epochs * batches, f"epoch {(step - 1) // batches + 1}/{epochs}"
                ),
            )  # fmt: skip
        path = save_checkpoint(out, family, model, resolved)
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    first, last = sum(losses[:batches]) / batches, sum(losses[-batches:]) / batches
    console.print(
        f"{family}: loss {first:.4f} (epoch 1) -> {last:.4f} (epoch {epochs}); checkpoint {path}",
        soft_wrap=True,
    )


def _train_on_data(family: str, out: Path, data: str, epochs: int, options: dict) -> None:
    """A data set in its published layout, validated each epoch like `check accuracy`."""
    from edge_sdk.reports.progress import progress_steps

    try:
        from edge_sdk.training import train_on_data
    except ImportError as exc:
        raise _torch_needed(exc) from exc
    lines: list[str] = []
    running = [1]  # the epoch in progress, for the progress text

    def summary(epoch: Any) -> None:
        running[0] = epoch.epoch + 1
        figures = " ".join(f"{k} {v:.4f}" for k, v in epoch.figures.items())
        skipped = f" ({epoch.skipped} unreadable skipped)" if epoch.skipped else ""
        lines.append(
            f"epoch {epoch.epoch}/{epoch.epochs}: loss {epoch.train_loss:.4f} {figures}{skipped}"
        )

    try:
        with progress_steps(f"train {family}", errors, lines=True) as report:
            result = train_on_data(
                family, out, data, **options, on_epoch=summary,
                on_step=lambda step, total, _loss: report(
                    step, total, f"epoch {running[0]}/{epochs}"
                ),
            )  # fmt: skip
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    record = result.provenance
    metric = record.get("main_metric")
    best = record.get("best", {}).get(metric, float("nan"))
    console.print(
        f"{family}: best epoch {record.get('best_epoch')} ({metric} {best:.4f}); samples "
        f"{record.get('samples')}; checkpoint {result.checkpoint} (last: {result.last})",
        soft_wrap=True, highlight=False,
    )  # fmt: skip


@import_app.command("face-expclip")
def import_face_expclip(
    clip: Annotated[
        Path,
        typer.Option(help="Hugging Face CLIP folder: config.json, model.safetensors, tokenizer "
                     "files (pytorch_model.bin-only folders are refused: convert them)."),
    ],
    head: Annotated[
        Path,
        typer.Option(help="Exp-CLIP projection head: .safetensors, or the released .pth/.pt "
                     "state dict (zip format, read weights-only)."),
    ],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")],
    labels: Annotated[
        str | None,
        typer.Option(help="Comma-separated class names in output order (default RAF-DB's 7); "
                     "prototypes are recomputed."),
    ] = None,
) -> None:  # fmt: skip
    """Import a CLIP checkpoint and the released Exp-CLIP head as a face-expclip bundle."""
    check_writable(out, "--out", directory=True)
    try:
        from export.import_weights import import_expclip
    except ImportError as exc:
        needs = "import needs torch and transformers: pip install 'edge-sdk[torch]'"
        raise fail(InputError(f"{needs} ({exc})")) from exc
    names = None if labels is None else [n.strip() for n in labels.split(",") if n.strip()]
    try:
        bundle = import_expclip(clip, head, out, labels=names)
    except EdgeSDKError as exc:
        raise fail(exc) from exc
    console.print(
        f"{out}: face-expclip ({bundle.manifest.variant}), labels: "
        f"{', '.join(bundle.manifest.labels)}",
        soft_wrap=True, highlight=False,
    )  # fmt: skip
