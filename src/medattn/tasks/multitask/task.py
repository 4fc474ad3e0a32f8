"""Multi-task learning as a task of the engine: one shared encoder, several heads trained together.

Chosen only when `--heads` is given (`requires`): e.g. `--heads segmentation,classification:grade` trains a mask
and a per-image label at once, `classification:foreground` ("lesion on this slice") needs no column, and any mix of
classification:COLUMN / regression:COLUMN heads works with or without the segmentation head (heads.py).
Data: segmentation's layouts with the label columns in manifest.csv or the image,mask CSV, or without masks a
path,<labels> CSV (sources.py), split by patient when ids exist. Model: `multitask_unet` (models/multitask.py).
Training draws whole images (a per-image label belongs to the whole image); the loss is each head's own, masked to
labelled images, combined by learned uncertainty (default: no weights to tune, and heads whose losses differ in
scale balance themselves) or fixed `--head-weights` (loss.py). The best epoch has the highest `score`: the mean of
each head's primary validation metric (Dice, AUC, R² floored at 0). `evaluate --json` gives one section per head,
each by its own task's metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.errors import ConfigError
from medattn.registry import TASKS
from medattn.tasks.base import Pool, Task, TaskData, auto_epochs, listed_fold_source
from medattn.tasks.multitask.heads import SEGMENTATION, parse_heads, parse_weights

MODEL = "multitask_unet"
BATCH = {2: 16, 3: 2}
AUTO_IMAGES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 4000, 10, 100
SINGLE_OUTPUT = (
    "a multi-task run gives a dict of outputs, one per head; `medattn explain` and `medattn export` (ONNX) take "
    "single-output runs: train the head you need alone (without --heads) to explain or export it"
)


@TASKS.register("multitask", tasks=(), description="several heads on one shared encoder, trained together")
class MultiTaskTask(Task):
    name = "multitask"
    description = "segmentation, classification and regression heads on one encoder (--heads)"
    layouts = "segmentation's layouts with label columns (manifest.csv, image,mask CSV), a path,<labels> CSV (--heads)"
    model_tag = "multitask"
    fields = frozenset(
        {
            "data.heads",
            "train.head_weights",
            "data.spacing",
            "data.modalities",
            "model.fusion",
            "train.modality_dropout",
        }
    )
    requires = frozenset({"data.heads"})
    losses = ("dice_ce", "focal", "tversky")  # the segmentation head's; the others use their tasks' defaults
    select_metrics = ("score", "loss")
    fold_metric = "score"
    summary_keys = ("score",)
    predict_options = frozenset({"out_dir", "overwrite"})
    explains = False
    recognition_order = 5  # asked before segmentation, and only when --heads is set

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.tasks.multitask.sources import looks_like_multitask

        return looks_like_multitask(path)

    def open(self, config: RunConfig):
        from medattn.tasks.multitask.sources import open_split

        return open_split(config)

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.tasks.multitask.data import encode_split, head_specs
        from medattn.tasks.segment.data import load_segmentation_data

        heads = parse_heads(config.data.heads)
        source = self.open(config) if source is None else source
        seg = load_segmentation_data(config, source)
        train, val = source.splits["train"], source.splits["val"]
        specs = head_specs([h for h in heads if h.kind != SEGMENTATION], train, val, where=source.path)
        labels = {
            split: encode_split(specs, cases, masks, where=f"{source.path} [{split}]")
            for split, cases, masks in (("train", train, seg.train_y), ("val", val, seg.val_y))
        }
        return TaskData(
            source=source,
            spatial_dims=seg.spatial_dims,
            in_channels=seg.in_channels,
            num_outputs=seg.num_classes,
            n_train=len(seg.train_x),
            modality=seg.source.modality,
            channel_names=seg.source.channel_names,
            notes=seg.notes,
            extra={"seg": seg, "heads": heads, "specs": specs, "labels": labels},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return MODEL, {}

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {
            "train.batch_size": BATCH[data.spatial_dims],
            "train.loss": "dice_ce",
            "train.select_metric": "score",
            "train.ema": 0.0,
            "train.head_weights": "uncertainty",
        }

    def check(self, config: RunConfig) -> None:
        super().check(config)
        heads = parse_heads(config.data.heads)
        parse_weights(config.train.head_weights, heads)
        if config.model.fusion not in (None, "early"):
            raise ConfigError(
                f"--fusion {config.model.fusion}: a multi-task model gives a dict of head outputs, which only early "
                "fusion (the modalities stacked as channels) passes through; use --fusion early"
            )
        if config.train.teacher:
            raise ConfigError("--teacher: distillation needs one output to soften; a multi-task model has several")

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_IMAGES, len(train_set), low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        config = super().resolve(config, data, train_set)
        seg = data.extra["seg"]
        outputs = {h.name: seg.num_classes for h in data.extra["heads"] if h.kind == SEGMENTATION}
        outputs.update({spec.head.name: spec.outputs for spec in data.extra["specs"]})
        heads = {h.name: outputs[h.name] for h in data.extra["heads"]}  # in the order --heads gave
        given = config.model.options.get("heads")
        if given is not None and given != heads:
            raise ConfigError(f"model.options.heads {given} differs from the heads of the data and --heads: {heads}")
        uncertainty = parse_weights(config.train.head_weights, data.extra["heads"]) is None
        config.model.options = {**config.model.options, "heads": heads, "uncertainty": uncertainty}
        config.data.spacing = seg.plan.spacing or "none"
        config.data.class_names = list(seg.class_names)
        return config

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData):
        from medattn.tasks.multitask.train_set import WholeImageTrainSet

        return WholeImageTrainSet(data.extra["seg"], data.extra["labels"]["train"], config)

    def loss(self, config: RunConfig, data: TaskData):
        from medattn.tasks.multitask.loss import MultiTaskLoss
        from medattn.tasks.segment.task import build_segmentation_loss

        heads = data.extra["heads"]
        return MultiTaskLoss(
            heads,
            segmentation_loss=build_segmentation_loss(config.train.loss, gamma=config.train.focal_gamma),
            weights=parse_weights(config.train.head_weights, heads),
        )

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        """Every validation image whole: each head's own metrics, their mean primary metric (`score`), the loss."""
        import torch

        from medattn.tasks.multitask.inference import decoded, run_whole
        from medattn.tasks.multitask.scores import head_metrics, scalar_scores, truth_in_units
        from medattn.tasks.segment.metrics import case_metrics

        seg, specs, labels = data.extra["seg"], data.extra["specs"], data.extra["labels"]["val"]
        heads = data.extra["heads"]
        rows, outputs, losses = [], {s.head.name: [] for s in specs}, []
        for i, (x, y, spacing) in enumerate(zip(seg.val_x, seg.val_y, seg.val_spacing, strict=True)):
            raw = run_whole(model, x, device=device, amp=amp)
            target = {"mask": y[None].long(), **{n: torch.from_numpy(v[i : i + 1]) for n, v in labels.items()}}
            losses.append([float(v) for v in loss_fn.head_losses(raw, target, device)])
            result = decoded(raw, specs)
            if SEGMENTATION in result:
                pred = result[SEGMENTATION].argmax(dim=0).cpu().numpy()
                rows.append(case_metrics(pred, y.numpy(), num_classes=seg.num_classes, spacing=spacing))
            for spec in specs:
                outputs[spec.head.name].append(result[spec.head.name])
        sections = {}
        for head in heads:
            if head.kind == SEGMENTATION:
                dice = np.array([[row[c]["dice"] for c in sorted(row)] for row in rows])  # (cases, classes)
                sections[head.name] = {"kind": SEGMENTATION, "dice": float(dice.mean())}
        for spec in specs:
            truth = truth_in_units(spec, labels[spec.head.name])
            sections[spec.head.name] = head_metrics(spec, truth, outputs[spec.head.name], ci=False)
        scores = scalar_scores({h.name: sections[h.name] for h in heads})
        per_head = np.nanmean(np.array(losses, dtype=np.float64), axis=0)  # (H,): each head's mean loss
        with torch.no_grad():
            scores["loss"] = float(loss_fn.combine(model, [torch.tensor(v) for v in per_head]))
        return scores

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        from medattn.tasks.multitask.loss import uncertainty_of

        seg, source = data.extra["seg"], data.source
        weights = parse_weights(config.train.head_weights, data.extra["heads"])
        names = [h.name for h in data.extra["heads"]]
        if weights is None:
            log_variances = uncertainty_of(model).detach().cpu().tolist()
            weighting = {
                "rule": "uncertainty (Kendall et al. 2018): sum exp(-s) L + s, s = log sigma^2 learned per head",
                "log_variances": dict(zip(names, log_variances, strict=True)),
                "weights": {n: math.exp(-s) for n, s in zip(names, log_variances, strict=True)},
            }
        else:
            weighting = {"rule": "fixed", "weights": dict(zip(names, weights, strict=True))}
        return {
            "class_names": seg.class_names,
            "heads": [spec.to_card() for spec in data.extra["specs"]],
            "head_names": names,
            "head_weighting": weighting,
            "selection": "score: the mean over heads of Dice (segmentation), AUC (classification; accuracy when "
            "validation has one class) and R² floored at 0 (regression), on the validation images",
            "input": seg.plan.to_card(),
            "training_data": {
                "source": source.path,
                "kind": source.kind,
                "splits": {name: len(cases) for name, cases in source.splits.items()},
                "notes": data.notes,
            },
        }

    def summary(self, result: dict) -> str:
        firsts = ("dice", "auc", "r2")
        heads = ", ".join(f"{k} {v:.4f}" for k, v in result["val"].items() if k.partition("/")[2] in firsts)
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val score {result['val']['score']:.4f} "
            f"({heads})\nrun written to {result['run']}"
        )

    def progress_text(self, scores: dict, best: dict) -> str:
        return f"val score {scores['score']:.3f} (best {best['scores'].get('score', math.nan):.3f})"

    def output_shape(self, model, x_shape: tuple[int, ...]) -> dict:
        batch, spatial = x_shape[0], tuple(x_shape[2:])
        heads = model.config["options"]["heads"]
        return {n: (batch, k, *spatial) if n == SEGMENTATION else (batch, k) for n, k in heads.items()}

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.multitask.report import evaluate_run

        if tta:
            raise ConfigError("--tta: multi-task runs are evaluated without test-time flips")
        return evaluate_run(run, data=data, split=split)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.multitask.report import predict_files

        return predict_files(run, files, out_dir=out_dir, overwrite=overwrite, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.multitask.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        from medattn.tasks.multitask.report import print_predictions

        print_predictions(payload)

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.multitask.report import inspect_heads

        return inspect_heads(config)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.multitask.report import print_inspect

        print_inspect(report)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.multitask.report import report_sections

        return report_sections(run, data=data, split=split)

    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        raise ConfigError(SINGLE_OUTPUT)

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        # `medattn export` draws its parity images here too: ONNX parity is checked on one output array
        raise ConfigError(f"{run}: {SINGLE_OUTPUT}")

    # -- cross-validation -------------------------------------------------------------------------------
    def fold_pool(self, source) -> Pool:
        from medattn.tasks.segment.task import SegmentationTask

        return SegmentationTask.fold_pool(self, source)  # cases, grouped by patient when every case has an id

    def fold_source(self, source, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str):
        return listed_fold_source(source, pool, train, held_out, note)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.multitask.report import score_cases

        metrics = score_cases(run, source.splits["val"], where=f"{source.path} [held-out fold]", ci=False)
        return {"score": metrics["score"]}

    def spatial_dims(self, config: RunConfig) -> int:
        from medattn.tasks.segment.task import SegmentationTask

        return SegmentationTask.spatial_dims(self, config)
