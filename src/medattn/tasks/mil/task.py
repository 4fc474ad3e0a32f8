"""Multiple instance learning as a task of the engine: labels per patient (or study), images per bag.

Why a task of its own and not a classification option: the unit everything counts is the bag, not the image:
batches are padded bags, validation and evaluation score one prediction per bag, predict takes a bag (a folder
of images, or several files) and answers with the weight of each image, cross-validation folds are bags. A
classification option would branch every one of classification's paths on it. What is the same is reused:
the losses, the metrics with their bootstrap CIs and the decision thresholds come from tasks/classify/.

Data: a CSV `path,label,<bag>[,patient_id][,split]` with `--bag <column>` (sources.py). Model: attention_mil
(models/mil.py): any registered classifier backbone as the instance encoder, gated attention pooling (Ilse et
al. 2018), a bag classifier. Defaults: 4 bags a batch, cross-entropy with label smoothing 0.1, the best epoch
on validation loss (a few tens of bags make AUC a coarse, tie-prone selection score).
"""

from __future__ import annotations

import math
from pathlib import Path

from medattn.config import RunConfig
from medattn.errors import DataError
from medattn.registry import TASKS
from medattn.tasks.base import Pool, Task, TaskData, auto_epochs, listed_fold_source
from medattn.tasks.classify.scores import ClassScores
from medattn.tasks.mil.data import load_bags
from medattn.tasks.mil.train_set import BagTrainSet

# epochs = 0 sees about AUTO_BAGS bags: 52 training patients get 40 epochs, a thousand bags the minimum
AUTO_BAGS, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 2_000, 10, 40
BATCH = 4


@TASKS.register("mil", tasks=(), description="one label per bag of images (a patient's slices): attention MIL")
class MILTask(ClassScores, Task):
    name = "mil"
    description = "one label per bag of images (a patient's slices), by attention MIL"
    layouts = "a CSV path,label,<bag column> with --bag naming the column (rows of one bag share its label)"
    model_tag = "mil"
    fields = frozenset(
        {
            "data.bag",
            "data.size",
            "data.clinical",
            "data.clinical_columns",
            "data.clinical_fusion",
            "train.clinical_dropout",
            "train.threshold",
            "train.label_smoothing",
        }
    )
    requires = frozenset({"data.bag"})
    losses = ("ce", "weighted_ce", "focal")
    select_metrics = ("loss", "auc", "acc", "balanced_acc")
    fold_metric = "auc"
    summary_keys = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro")
    item = "bags"
    recognition_order = 10  # asked only with --bag (requires), then before classification's CSV

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.data.manifest import csv_header

        return path.suffix.lower() == ".csv" and {"path", "label"} <= set(csv_header(path))

    def open(self, config: RunConfig):
        from medattn.tasks.mil.sources import ensure_splits, open_bags

        data = config.data
        source = open_bags(data.path, column=data.bag)
        source.notes += ensure_splits(
            source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
        )
        return source

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        source = self.open(config) if source is None else source
        for split in ("train", "val"):
            if split in source.splits and not source.splits[split]:
                raise DataError(f"{source.path} [{split}]: no bags")
        if min(source.class_counts("train")) == 0:
            raise DataError(f"{source.path} [train]: a class has no training bag ({source.class_counts('train')})")
        bags, clinical = load_bags(config, source)
        return TaskData(
            source=source,
            spatial_dims=bags.spatial_dims,
            in_channels=bags.in_channels,
            num_outputs=len(source.class_names),
            n_train=len(bags.train),
            modality=source.modality,
            notes=list(source.notes),
            extra={"bags": bags, "clinical": clinical},
        )

    def spatial_dims(self, config: RunConfig) -> int:
        from medattn.data.readers import one_slice_as_2d, read_image
        from medattn.tasks.mil.sources import open_bags

        first = open_bags(config.data.path, column=config.data.bag).splits["train"][0].paths[0]
        return one_slice_as_2d(read_image(first)[0]).ndim - 1

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return "attention_mil", {}

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {
            "train.batch_size": BATCH,
            "train.loss": "ce",
            "train.select_metric": "loss",
            "train.label_smoothing": 0.1,
            "train.threshold": "0.5",
            "train.ema": 0.0,  # a few hundred steps in all: an average of the weights would lag far behind
            # a few tens of bags: each bag's clinical values are kept (the vector is unknown only where the table
            # lacks it); --clinical-dropout trains an image-only path when one is wanted
            "train.clinical_dropout": 0.0 if config.data.clinical else None,
        }

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        """As every task resolves, and with clinical data the model's clinical inputs: their count, how they are
        fused, and the vector of a patient with every value unknown (used when a bag comes without them)."""
        config = super().resolve(config, data, train_set)
        spec = data.extra["clinical"]
        if spec is not None:
            config.model.options = {
                **config.model.options,
                "clinical": spec.width,
                "clinical_fusion": config.data.clinical_fusion or "concat",
                "clinical_missing": spec.vector(None).tolist(),
            }
        return config

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_BAGS, data.n_train, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData) -> BagTrainSet:
        return BagTrainSet(data.extra["bags"].train, seed=config.train.seed)

    def distillation(self, data: TaskData) -> str:
        return "softmax"

    def loss(self, config: RunConfig, data: TaskData):
        from medattn.tasks.classify.loss import task_loss

        return BagLoss(task_loss(config, data))

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        from medattn.tasks.classify.scores import validation_scores
        from medattn.tasks.mil.predict import bag_outputs

        val = data.extra["bags"].val
        probs, _ = bag_outputs(model, val, device=device, amp=amp)
        return validation_scores(val.y.numpy(), probs, labels=data.source.labels, loss_fn=loss_fn)

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        from medattn.engine.inputs import InputSpec
        from medattn.tasks.mil.report import bag_threshold

        source, bags = data.source, data.extra["bags"]
        threshold, rule = bag_threshold(config, source.labels, bags.val, model, device=device)
        spec = InputSpec(
            spatial_dims=data.spatial_dims,
            channels=data.in_channels,
            intensity=bags.intensity,
            size=bags.size,
            source_spacing=bags.source_spacing,
        )
        splits = {name: len(bags_) for name, bags_ in source.splits.items()}
        instances = {name: sum(len(b.paths) for b in bags_) for name, bags_ in source.splits.items()}
        return {
            "labels": source.labels,
            "class_names": source.class_names,
            "bag": {"column": source.column, "unit": "bags", "train_max_instances": _max_instances()},
            "input": spec.to_card(),
            "clinical": None if data.extra["clinical"] is None else data.extra["clinical"].to_card(),
            "threshold": threshold,
            "threshold_rule": rule,
            "training_data": {
                "source": source.path,
                "kind": source.kind,
                "splits": splits,
                "instances": instances,
                "class_counts": {name: source.class_counts(name) for name in source.splits},
                "notes": data.notes,
            },
        }

    def summary(self, result: dict) -> str:
        val = result["val"]
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val auc {val.get('auc', math.nan):.4f} "
            f"acc {val.get('acc', math.nan):.4f} (per bag)\nrun written to {result['run']}"
        )

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.mil.report import evaluate_run

        return evaluate_run(run, data=data, split=split)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.mil.report import predict_bags

        return predict_bags(run, files, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.mil.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        for row in payload["predictions"]:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in row["probabilities"].items())
            top = ", ".join(f"{Path(a['file']).name} {a['weight']:.2f}" for a in row["attention"][:3])
            print(f"{row['bag']}: {row['class']} ({probs}); most attended: {top}")

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.mil.report import inspect_bags

        return inspect_bags(config)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.mil.report import print_inspect

        print_inspect(report)

    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        from medattn.tasks.classify.explain import class_target

        return class_target(card, output, target)

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        from medattn.tasks.mil.explain import bag_cases

        return bag_cases(run, data=data, split=split)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.mil.report import report_sections

        return report_sections(run, data=data, split=split)

    # -- cross-validation -------------------------------------------------------------------------------
    def fold_pool(self, source) -> Pool:
        import numpy as np

        bags = [bag for name in ("train", "val") for bag in source.splits.get(name, [])]
        strata = np.asarray([bag.label for bag in bags], dtype=int)
        return Pool(len(bags), strata, np.asarray([bag.patient for bag in bags]), items=bags, unit="bags")

    def fold_source(self, source, pool: Pool, train, held_out, note: str):
        return listed_fold_source(source, pool, train, held_out, note)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.mil.report import score_split

        metrics = score_split(run, source, "val", ci=False)
        return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _max_instances() -> int:
    from medattn.tasks.mil.train_set import MAX_INSTANCES

    return MAX_INSTANCES


class BagLoss:
    """The engine's loss(model, logits, target, device) on bag labels."""

    def __init__(self, base) -> None:
        self.base = base  # loss(logits, labels): also what validation reports

    def __call__(self, model, logits, target, device):
        return self.base(logits.float(), target.to(device))
