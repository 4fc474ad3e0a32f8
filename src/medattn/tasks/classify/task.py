"""Classification as a task of the engine: binary, multi-class, multi-label and ordinal labels, 2D and 3D.

Data: a MedMNIST .npz, a class-per-folder tree or a CSV `path,label[,patient_id][,split]` (sources.py).
Defaults (chosen by benchmarks/medmnist.py, README table): the whole-image backbone of tasks/images.py; batch 64;
cross-entropy with label smoothing 0.1; the best epoch on validation loss (on BreastMNIST's paired seeds it kept
AUC .902 and raised ACC at 0.5 from .861 to .872).
"""

from __future__ import annotations

import math
from pathlib import Path

from medattn.config import RunConfig
from medattn.data.clinical_images import CLINICAL_FIELDS
from medattn.data.images import ImageData, load_images
from medattn.errors import DataError
from medattn.registry import TASKS
from medattn.tasks.base import TaskData, auto_epochs
from medattn.tasks.classify.scores import ClassScores
from medattn.tasks.classify.train_set import ClassTrainSet
from medattn.tasks.images import DEFAULT_MODEL, DEFAULT_OPTIONS, ImageTask

# epochs = 0 ("auto") sees about this many training images in total, within [AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX]:
# small sets get more passes (BreastMNIST's 546 images: 59 epochs), large ones at least 12 (PneumoniaMNIST's
# 4,708: 12 epochs, under 10 minutes here with the 2D default)
AUTO_IMAGES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 32_000, 12, 60
BATCH = 64


@TASKS.register("classification", tasks=(), description="one label (or several) per image: binary, multi-class, ...")
class ClassificationTask(ClassScores, ImageTask):
    name = "classification"
    description = "one label (or several) per image"
    layouts = "a MedMNIST-layout .npz, a folder of class folders (optionally under train/val/test), a CSV path,label"
    fields = (
        frozenset(
            {
                "data.labels",
                "data.size",
                "train.sampler",
                "train.threshold",
                "train.label_smoothing",
                "train.mixup",
                "train.cutmix",
                "data.modalities",
                "model.fusion",
                "train.modality_dropout",
                "data.synthetic",
                "data.synthetic_ratio",
            }
        )
        | CLINICAL_FIELDS
    )
    losses = ("ce", "weighted_ce", "focal")
    select_metrics = ("loss", "auc", "acc", "balanced_acc")
    fold_metric = "auc"
    summary_keys = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro", "ece", "mae", "qwk")
    has_demo = True
    recognition_order = 90
    legacy_names = ("binary", "multiclass", "multilabel", "ordinal")
    predict_options = frozenset({"tta"})

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        return path.is_dir() or path.suffix.lower() in (".npz", ".csv")

    def open_source(self, path: str, config: RunConfig):
        from medattn.tasks.classify.sources import open_source

        return open_source(path, labels=config.data.labels, class_names=config.data.class_names)

    def strata(self, split):
        from medattn.tasks.classify.sources import strata

        return strata(split)

    def open(self, config: RunConfig):
        from medattn.tasks.classify.sources import ensure_splits

        data = config.data
        source = self.open_source(data.path, config)
        source.notes += ensure_splits(
            source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
        )
        return source

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.tasks.classify.synthetic import mix_synthetic

        source = self.open(config) if source is None else source
        images = load_images(config, source)
        for split in ("train", "val"):
            _check_labels(source, split)
        synthetic = mix_synthetic(config, source, images)  # the training split only
        notes = self.image_notes(source.notes, images)
        if synthetic is not None:
            notes.append(f"{synthetic['images']} synthetic images from {synthetic['path']} joined the training split")
        return TaskData(
            source=source,
            spatial_dims=images.spatial_dims,
            in_channels=images.in_channels,
            num_outputs=len(source.class_names),
            n_train=len(images.train.y),
            modality=source.modality,
            notes=notes + ([synthetic["note"]] if synthetic and "note" in synthetic else []),
            extra={"images": images, "synthetic": synthetic},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {
            "train.batch_size": BATCH,
            "train.loss": "ce",
            "train.select_metric": "loss",
            "train.label_smoothing": 0.1,
            "train.sampler": "shuffle",
            "train.threshold": "0.5",
            "train.ema": 0.99,
            "data.synthetic_ratio": 1.0 if config.data.synthetic else None,
        }

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_IMAGES, data.n_train, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData) -> ClassTrainSet:
        images: ImageData = data.extra["images"]
        train = images.train
        return ClassTrainSet(
            train.x, train.y, num_classes=data.num_outputs, seed=config.train.seed, clinical=train.clinical
        )

    def distillation(self, data: TaskData) -> str:
        return "sigmoid" if data.source.labels == "multilabel" else "softmax"  # as loss.probabilities

    def loss(self, config: RunConfig, data: TaskData):
        from medattn.tasks.classify.loss import MixedLoss, task_loss

        return MixedLoss(task_loss(config, data))

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        from medattn.tasks.classify.predict import predict_probs
        from medattn.tasks.classify.scores import validation_scores

        labels, val = data.source.labels, data.extra["images"].val
        probs = predict_probs(model, val.inputs, labels=labels, device=device, amp=amp)
        return validation_scores(val.y.numpy(), probs, labels=labels, loss_fn=loss_fn)

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        from medattn.tasks.classify.predict import decision_threshold

        source, images = data.source, data.extra["images"]
        threshold, rule = decision_threshold(config, source.labels, images.val, model, device=device)
        counts = {name: source.class_counts(name) for name in source.splits}
        return {
            "labels": source.labels,
            "class_names": source.class_names,
            "input": self.input_card(data),
            "clinical": self.clinical_card(data),
            "threshold": threshold,
            "threshold_rule": rule,
            "training_data": {**self.data_card(data), "class_counts": counts, "synthetic": data.extra.get("synthetic")},
        }

    def summary(self, result: dict) -> str:
        val = result["val"]
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val auc {val.get('auc', math.nan):.4f} "
            f"acc {val.get('acc', math.nan):.4f}\nrun written to {result['run']}"
        )

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.classify.report import evaluate_run

        return evaluate_run(run, data=data, split=split, tta=tta)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.classify.predict import predict_files

        return predict_files(run, files, tta=tta, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.classify.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        for row in payload["predictions"]:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in row["probabilities"].items())
            clinical = f"; clinical: {row['clinical']}" if "clinical" in row else ""
            print(f"{row['file']}: {row['class']} ({probs}){clinical}")

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.classify.inspect import inspect_source
        from medattn.tasks.classify.sources import open_source

        return inspect_source(open_source(config.data.path, labels=config.data.labels), progress=progress)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.classify.inspect import print_inspect

        print_inspect(report)

    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        from medattn.tasks.classify.explain import class_target

        return class_target(card, output, target)

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        from medattn.tasks.classify.explain import class_cases

        return class_cases(self, run, data=data, split=split)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.classify.report_html import report_sections

        return report_sections(run, data=data, split=split)

    # -- cross-validation -------------------------------------------------------------------------------
    def score_fold(self, run: Path, source) -> dict:
        from medattn.engine.loaded import load_run
        from medattn.tasks.classify.metrics import classification_metrics
        from medattn.tasks.classify.predict import predict_probs
        from medattn.tune.ensemble import Ensemble, member_inputs

        loaded = load_run(run)
        (member, prepared), *_ = member_inputs(Ensemble(run, [loaded], None, ""), source, "val")
        probs = predict_probs(member.model, prepared.inputs, labels=member.labels)
        metrics = classification_metrics(
            prepared.y.numpy(), probs, task=member.labels, threshold=member.card.get("threshold"), ci=False
        )
        return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    # -- demo -------------------------------------------------------------------------------------------
    def demo(self, out: Path, *, say) -> RunConfig:
        from medattn.data.phantom import save_medmnist_npz

        data = out / "data" / "phantom_classification.npz"
        say(f"writing 2D phantom images (lesion present / absent) to {data}")
        save_medmnist_npz(data, n_train=800, n_val=200, n_test=400, spatial_dims=2, size=32, num_classes=2, seed=0)
        config = RunConfig(task=self.name)
        config.data.path = str(data)
        config.model.name = DEFAULT_MODEL  # the 2D default with one block a stage, so the demo stays short
        config.model.options = {**DEFAULT_OPTIONS[2], "depths": [1, 1, 1]}
        config.train.epochs = 25
        return config


def _check_labels(source, split: str) -> None:
    labels = source.splits[split].labels
    if labels.ndim == 1 and labels.size and labels.max() >= len(source.class_names):
        raise DataError(
            f"{source.path} [{split}]: label {int(labels.max())} is outside the {len(source.class_names)} classes"
        )
    if split == "train" and labels.ndim == 1 and len(set(labels.tolist())) < 2:
        raise DataError(f"{source.path} [train]: every image has the same label: nothing to learn")
