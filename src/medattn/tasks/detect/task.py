"""Detection as a task of the engine: boxes of several classes in 2D pictures and 3D volumes.

Data: Pascal VOC, COCO, YOLO, a CSV of boxes (2D or 3D) or MONAI's detection JSON (sources.py); any segmentation
set becomes one with `medattn data boxes` (from_masks.py). Models: `detect_anchorfree` (default, one stage) and
`faster_rcnn` (two stages), both on attention ResNet backbones with a feature pyramid; the predicting levels come
from the training boxes (plan.py). Loss: varifocal + GIoU by default (loss.py). After every epoch the validation
images are detected whole (or by tiles) and the best epoch is the one with the highest mAP@0.5:0.95.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.registry import TASKS
from medattn.tasks.base import Pool, Task, TaskData, auto_epochs, listed_fold_source

DEFAULT_MODEL = "detect_anchorfree"
BATCH = {2: 8, 3: 2}
# epochs = 0 ("auto") shows the model about this many input pixels (voxels) in total, within the bounds: in 2D
# 6k patches of 256 x 256 (a few hundred 640 x 480 blood smears: the 6 epochs of the minimum, 8-14 minutes on one
# core here; LGG's 1,650 slices of 128 x 128: 15 epochs, 6 minutes), in 3D 7k volumes of 48 x 64 x 48 (MSD
# Hippocampus: 36 epochs, about 5 minutes)
AUTO_PIXELS, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = {2: 4.0e8, 3: 1.0e9}, 6, 60


@TASKS.register("detection", tasks=(), description="boxes of several classes, from VOC, COCO, YOLO, CSV or MONAI")
class DetectionTask(Task):
    name = "detection"
    explains = False  # boxes, not a class score or a region: `medattn explain`'s maps do not apply
    description = "boxes around objects of several classes"
    layouts = (
        "a Pascal VOC folder, a COCO JSON, a YOLO folder (images/ + labels/), a CSV path,x1,y1,x2,y2,label "
        "(3D: z1,z2), a MONAI detection JSON (--box-format, --box-space)"
    )
    model_tag = "detection"
    fields = frozenset({"data.size", "data.patch", "data.drop_bad_boxes", "data.box_format", "data.box_space"})
    losses = ("varifocal_giou", "varifocal_diou", "focal_giou", "focal_diou")
    select_metrics = ("map", "map50", "froc")
    lower_is_better = frozenset()
    fold_metric = "map"
    summary_keys = ("map", "map50", "froc", "ar100")
    predict_options = frozenset({"out_dir", "overwrite"})
    recognition_order = 5  # before segmentation, which takes any folder with images/ and labels/

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.tasks.detect.sources import detection_kind

        return detection_kind(path) is not None

    def open(self, config: RunConfig):
        from medattn.tasks.detect.data import open_split

        return open_split(config)

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.tasks.detect.data import load_detection_data

        found = load_detection_data(config, source)
        return TaskData(
            source=found.source,
            spatial_dims=found.plan.spatial_dims,
            in_channels=found.plan.channels,
            num_outputs=len(found.class_names),
            n_train=len(found.train_x),
            modality=found.source.modality,
            notes=found.notes,
            extra={"detection": found},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return DEFAULT_MODEL, {}

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {
            "train.batch_size": BATCH[data.spatial_dims],
            "train.loss": "varifocal_giou",
            "train.select_metric": "map",
            "train.ema": 0.99,
        }

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        pixels = len(train_set) * math.prod(train_set.size)
        return auto_epochs(AUTO_PIXELS[data.spatial_dims], pixels, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        config = super().resolve(config, data, train_set)
        found = data.extra["detection"]
        plan = found.plan
        config.data.class_names = list(found.class_names)
        config.data.patch, config.data.size = plan.patch, plan.size
        if "strides" not in config.model.options:  # the levels the training boxes need (plan.py)
            config.model.options = {**config.model.options, "strides": list(plan.strides)}
        else:
            plan.strides = list(config.model.options["strides"])
        return config

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData):
        from medattn.tasks.detect.train_set import DetectionTrainSet

        return DetectionTrainSet(data.extra["detection"], config)

    def loss(self, config: RunConfig, data: TaskData):
        from medattn.tasks.detect.loss import DetectionLoss

        return DetectionLoss(config.train.loss)

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        """mAP@0.5, mAP@0.5:0.95, AR@100 and FROC over the validation images, as the model sees them."""
        from medattn.engine.device import autocast
        from medattn.tasks.detect.inference import detect_prepared
        from medattn.tasks.detect.report import score_detections

        found = data.extra["detection"]
        was_training = model.training
        model.eval()
        predictions = []
        with autocast(device, amp):
            for x in found.val_x:
                boxes = detect_prepared(model, x, found.plan, device=device)
                predictions.append({k: v.float().numpy() if k != "labels" else v.numpy() for k, v in boxes.items()})
        model.train(was_training)
        truths = [
            {"boxes": b.numpy(), "labels": y.numpy()} for b, y in zip(found.val_boxes, found.val_labels, strict=True)
        ]
        metrics = score_detections(predictions, truths, found.class_names, ci=False)
        scores = {k: v for k, v in metrics.items() if isinstance(v, float)}
        scores.update({f"ap50_{name}": value for name, value in metrics["ap50_per_class"].items()})
        return scores

    def output_shape(self, model, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return model.output_shape(x_shape[0], x_shape[2:])

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        found, source = data.extra["detection"], data.source
        return {
            "class_names": list(found.class_names),
            "input": found.plan.to_card(),
            "training_data": {
                "source": source.path,
                "kind": source.kind,
                "splits": {name: len(items) for name, items in source.splits.items()},
                "boxes": {name: int(sum(len(i.boxes) for i in items)) for name, items in source.splits.items()},
                "notes": data.notes,
            },
        }

    def summary(self, result: dict) -> str:
        val = result["val"]
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val mAP@0.5 {val.get('map50', math.nan):.4f}, "
            f"mAP@0.5:0.95 {val.get('map', math.nan):.4f}\nrun written to {result['run']}"
        )

    def progress_text(self, scores: dict, best: dict) -> str:
        return f"val mAP {scores.get('map', math.nan):.3f} mAP50 {scores.get('map50', math.nan):.3f}"

    # -- using a finished run ------------------------------------------------------------------------------
    # -- explanation and report ---------------------------------------------------------------------------

    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        from medattn.tasks.detect.report_html import no_saliency

        raise no_saliency(card.get("task", self.name))

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        from medattn.tasks.detect.report_html import detection_cases

        return detection_cases(run, data=data, split=split)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.detect.report_html import report_sections

        return report_sections(run, data=data, split=split)

    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.detect.report import evaluate_detection

        return evaluate_detection(run, data=data, split=split, tta=tta)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.detect.predict import predict_boxes

        return predict_boxes(run, files, out_dir=out_dir, overwrite=overwrite, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.detect.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        from medattn.tasks.detect.predict import print_boxes

        print_boxes(payload)

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.detect.inspect import inspect_detection

        return inspect_detection(config, progress=progress)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.detect.inspect import print_inspect

        print_inspect(report)

    # -- cross-validation -------------------------------------------------------------------------------
    def fold_pool(self, source) -> Pool:
        from medattn.tasks.detect.sources import has_boxes, patients

        items = [*source.splits["train"], *source.splits.get("val", [])]
        groups = patients(items)
        return Pool(len(items), has_boxes(items), None if groups is None else np.asarray(groups), items=items)

    def fold_source(self, source, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str):
        return listed_fold_source(source, pool, train, held_out, note)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.detect.report import score_split

        metrics = score_split(run, source, "val")
        return {k: v for k, v in metrics.items() if k in self.summary_keys}

    def spatial_dims(self, config: RunConfig) -> int:
        from medattn.tasks.detect.sources import open_configured

        return open_configured(config.data, drop_bad_boxes=True).spatial_dims
