"""Regression as a task of the engine: one or several continuous targets per image (disease progression, a
lesion's size, age, a treatment's effect), 2D and 3D.

Data: an .npz with continuous labels, or a CSV `path,<target columns>[,patient_id][,split]` (sources.py).
The models are the classifiers' (a vector per image), with one output per target. Targets are standardised with
the training set's mean and standard deviation, which the model card keeps, so predictions come back in the
targets' own units. Loss: MSE (default) or Huber on the standardised targets; the best epoch on validation loss.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.data.clinical_images import CLINICAL_FIELDS
from medattn.data.image_batches import ImageTrainSet
from medattn.data.images import load_images
from medattn.errors import DataError
from medattn.registry import TASKS
from medattn.tasks.base import TaskData, auto_epochs
from medattn.tasks.images import ImageTask

AUTO_IMAGES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 32_000, 15, 80
BATCH = 64


@TASKS.register("regression", tasks=(), description="continuous targets per image")
class RegressionTask(ImageTask):
    name = "regression"
    description = "one or several continuous targets per image"
    layouts = "an .npz with continuous *_labels, a CSV path,<target columns> (--targets names them)"
    fields = frozenset({"data.targets", "data.size"}) | CLINICAL_FIELDS
    losses = ("mse", "huber")
    select_metrics = ("loss", "mae", "rmse", "r2")
    lower_is_better = frozenset({"loss", "mae", "rmse"})
    fold_metric = "mae"
    summary_keys = ("mae", "rmse", "r2", "pearson", "spearman")
    predict_options = frozenset({"tta"})
    has_demo = True
    recognition_order = 20

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.tasks.regress.sources import looks_like_targets

        return looks_like_targets(path)

    def open_source(self, path: str, config: RunConfig):
        from medattn.tasks.regress.sources import open_targets

        return open_targets(path, targets=config.data.targets)

    def strata(self, split):
        from medattn.tasks.regress.sources import target_bins

        return target_bins(split.labels)

    def open(self, config: RunConfig):
        from medattn.tasks.regress.sources import ensure_splits

        data = config.data
        source = self.open_source(data.path, config)
        source.notes += ensure_splits(
            source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
        )
        return source

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        source = self.open(config) if source is None else source
        images = load_images(config, source)
        values = images.train.y.double()
        mean, std = values.mean(dim=0), values.std(dim=0)
        if len(values) < 2 or bool((std == 0).any()):
            raise DataError(f"{source.path} [train]: a target takes one value only: nothing to learn")
        return TaskData(
            source=source,
            spatial_dims=images.spatial_dims,
            in_channels=images.in_channels,
            num_outputs=len(source.target_names),
            n_train=len(values),
            modality=source.modality,
            notes=self.image_notes(source.notes, images),
            extra={"images": images, "mean": mean.float(), "std": std.float()},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {"train.batch_size": BATCH, "train.loss": "mse", "train.select_metric": "loss", "train.ema": 0.99}

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_IMAGES, data.n_train, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData) -> ImageTrainSet:
        images, mean, std = data.extra["images"], data.extra["mean"], data.extra["std"]
        train = images.train
        return ImageTrainSet(train.x, (train.y - mean) / std, seed=config.train.seed, clinical=train.clinical)

    def loss(self, config: RunConfig, data: TaskData):
        return StandardisedLoss(config.train.loss)

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        import torch

        from medattn.tasks.regress.metrics import regression_metrics

        val, mean, std = data.extra["images"].val, data.extra["mean"], data.extra["std"]
        pred = predict_values(model, val.inputs, mean=mean, std=std, device=device, amp=amp)
        scores = regression_metrics(val.y.numpy(), pred, target_names=data.source.target_names, ci=False)
        standardised = torch.from_numpy((pred - mean.numpy()) / std.numpy()).float()
        scores["loss"] = float(loss_fn.base(standardised, (val.y - mean) / std))
        return {k: v for k, v in scores.items() if isinstance(v, int | float)}

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        return {
            "target_names": data.source.target_names,
            "target_mean": data.extra["mean"].tolist(),
            "target_std": data.extra["std"].tolist(),
            "input": self.input_card(data),
            "clinical": self.clinical_card(data),
            "training_data": self.data_card(data),
        }

    def summary(self, result: dict) -> str:
        val = result["val"]
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val mae {val.get('mae', math.nan):.4g} "
            f"r2 {val.get('r2', math.nan):.3f}\nrun written to {result['run']}"
        )

    def progress_text(self, scores: dict, best: dict) -> str:
        return f"val mae {scores['mae']:.4g} r2 {scores['r2']:.3f} (best mae {best['scores'].get('mae', math.nan):.4g})"

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.regress.report import evaluate_run

        return evaluate_run(run, data=data, split=split, tta=tta, task=self)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.regress.report import predict_files

        return predict_files(run, files, tta=tta, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.regress.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        for row in payload["predictions"]:
            values = ", ".join(f"{k} {v:.4g}" for k, v in row["values"].items())
            clinical = f"; clinical: {row['clinical']}" if "clinical" in row else ""
            print(f"{row['file']}: {values}{clinical}")

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.regress.report import inspect_targets

        return inspect_targets(config.data.path)

    def print_inspect(self, report: dict) -> None:
        print(f"{report['path']} ({report['kind']}, {report['task']}): targets {', '.join(report['target_names'])}")
        for split, stats in report["targets"].items():
            for name, row in stats.items():
                print(
                    f"  {split:<5} {name}: n {row['n']}, mean {row['mean']:.4g}, sd {row['std']:.4g}, "
                    f"range {row['min']:.4g} .. {row['max']:.4g}"
                )
        if report["patients"]:
            print(f"  patients in more than one split: {report['patients']['in_more_than_one_split']}")

    # -- cross-validation -------------------------------------------------------------------------------
    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        from medattn.explain.target import Target, pick_index

        names = card["target_names"]
        index = pick_index(names, target, default=0, where="the run")
        values = output[0].double().numpy() * np.asarray(card["target_std"]) + np.asarray(card["target_mean"])
        title = ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, values, strict=True))
        return Target(index, names[index], f"predicted {title}", "identity")

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        from medattn.tasks.regress.report import _open_like_training
        from medattn.tune.ensemble import load_ensemble

        source, _ = _open_like_training(load_ensemble(run), data)
        names, split_data = source.target_names, source.splits.get(split)

        def truth(i):
            return "true " + ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, split_data.labels[i], strict=True)), None

        return self.split_cases(source, split, truth)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.regress.report_html import report_sections

        return report_sections(run, data=data, split=split)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.regress.report import score_split

        metrics = score_split(run, source, "val", tta=False)
        return {k: v for k, v in metrics.items() if k in self.summary_keys}

    # -- demo -------------------------------------------------------------------------------------------
    def demo(self, out: Path, *, say) -> RunConfig:
        """Phantom images whose target is the area of their organ (pixels per 1000): a size to estimate."""
        from medattn.tasks.regress.phantom import save_burden_npz

        data = out / "data" / "phantom_regression.npz"
        say(f"writing 2D phantom images with their organ's area (pixels per 1000) as the target to {data}")
        save_burden_npz(data, n_train=600, n_val=150, n_test=250, size=32, seed=0)
        config = RunConfig(task=self.name)
        config.data.path = str(data)
        name, options = self.default_model(2)
        config.model.name, config.model.options = name, {**options, "depths": [1, 1, 1]}  # one block a stage: short
        config.train.epochs = 20
        return config


def predict_values(model, x, *, mean, std, device=None, amp: bool = False, flips=None) -> np.ndarray:
    """(N, T) predictions in the targets' units for a standardised input (N, C, *spatial), or (images, clinical
    vectors (N, F))."""
    from medattn.engine.inferers import whole_image

    standardised = whole_image(model, x, device=device, amp=amp, flips=flips)
    return standardised * np.asarray(std, dtype=np.float64) + np.asarray(mean, dtype=np.float64)


class StandardisedLoss:
    """The engine's loss(model, output, target, device) on standardised targets: MSE or Huber (delta 1 sd)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def base(self, output, target):
        import torch.nn.functional as F

        if self.name == "huber":
            return F.huber_loss(output.float(), target.float(), delta=1.0)
        return F.mse_loss(output.float(), target.float())

    def __call__(self, model, output, target, device):
        return self.base(output, target.to(device))
