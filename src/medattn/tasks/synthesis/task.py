"""Class-conditional image synthesis as a task of the engine: a small DDPM that learns to make more images of each
class of a labelled set, 2D and 3D, for data too scarce to train a classifier well.

Data: the classification layouts (a MedMNIST .npz, class folders, a CSV `path,label`), read by the classification
task's own readers; one class per image. Never recognised from the data: a labelled set is classification's
unless `--task synthesis` says otherwise.

Why a DDPM and not a conditional GAN: its loss is a plain MSE on a prediction (the velocity v, diffusion.py), so it
trains in the one engine's one-optimizer loop (checkpoints, EMA, resume, DDP) with nothing adversarial to balance,
and it does not collapse onto a few modes on a few hundred images, where GANs are known to. Its cost, slow
sampling, is paid down with DDIM (50 network calls an image) and classifier-free guidance (diffusion.py).

Defaults: ddpm_unet; batch 64; MSE; EMA 0.995 of the weights (sampled from); the best epoch on the validation
images' v-prediction loss at fixed steps and noise; epochs sized to show the model about 160,000 images.
`medattn generate RUN` writes samples in the data's layout; `evaluate RUN --features CLASSIFIER_RUN` scores them.
"""

from __future__ import annotations

import math
from pathlib import Path

from medattn.config import RunConfig
from medattn.errors import ConfigError, DataError
from medattn.registry import TASKS
from medattn.tasks.base import TaskData, auto_epochs
from medattn.tasks.classify.task import ClassificationTask
from medattn.tasks.images import ImageTask

AUTO_IMAGES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 160_000, 30, 400
BATCH = 64
DEFAULT_OPTIONS = {2: {"widths": [16, 32, 64], "depth": 2}, 3: {"widths": [16, 32, 64], "depth": 1}}
SAMPLING = {"steps": 50, "guidance": 2.0}  # DDIM steps and classifier-free guidance weight, kept in the card


@TASKS.register("synthesis", tasks=(), description="class-conditional image synthesis (DDPM)")
class SynthesisTask(ImageTask):
    name = "synthesis"
    description = "class-conditional image synthesis (a DDPM) for scarce data"
    layouts = "the classification layouts (MedMNIST .npz, class folders, CSV path,label); pass --task synthesis"
    model_tag = "synthesis"
    fields = frozenset({"data.labels", "data.size"})
    losses = ("mse",)
    select_metrics = ("loss",)
    fold_metric = "loss"
    summary_keys = ("loss",)
    dense = True
    explains = False  # a denoiser's output is a velocity: no class score or region to explain
    recognition_order = 1000  # never: labelled data is classification's unless --task says otherwise
    evaluate_options = frozenset({"features"})

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        return False

    # the classification task's readers and splits: the same layouts, carved the same way
    open_source = ClassificationTask.open_source
    strata = ClassificationTask.strata
    inspect = ClassificationTask.inspect
    print_inspect = ClassificationTask.print_inspect

    def open(self, config: RunConfig):
        source = ClassificationTask.open(self, config)
        if source.labels == "multilabel":
            raise DataError(f"{source.path}: synthesis conditions on one class per image; these labels are multi-label")
        return source

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.data.images import load_images

        source = self.open(config) if source is None else source
        images = load_images(config, source)
        x = images.train.x
        return TaskData(
            source=source,
            spatial_dims=images.spatial_dims,
            in_channels=images.in_channels,
            num_outputs=len(source.class_names),
            n_train=len(images.train.y),
            modality=source.modality,
            notes=list(source.notes),
            extra={"images": images, "clip": [float(x.min()), float(x.max())]},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return "ddpm_unet", dict(DEFAULT_OPTIONS[spatial_dims])

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {"train.batch_size": BATCH, "train.loss": "mse", "train.select_metric": "loss", "train.ema": 0.995}

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_IMAGES, data.n_train, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    def output_shape(self, model, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (x_shape[0], model.in_channels, *x_shape[2:])  # the predicted velocity, the image's shape

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData):
        from medattn.tasks.synthesis.train_set import DiffusionTrainSet

        images = data.extra["images"]
        return DiffusionTrainSet(images.train.x, images.train.y, seed=config.train.seed)

    def loss(self, config: RunConfig, data: TaskData):
        return VelocityLoss()

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        from medattn.tasks.synthesis.train_set import validation_batch

        val = data.extra["images"].val
        return {"loss": velocity_loss(model, *validation_batch(val.x, val.y), device=device, amp=amp)}

    def progress_text(self, scores: dict, best: dict) -> str:
        return f"val v mse {scores['loss']:.4f} (best {best['scores'].get('loss', math.nan):.4f})"

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        from medattn.tasks.synthesis.diffusion import STEPS, UNCONDITIONAL

        source = data.source
        counts = {name: source.class_counts(name) for name in source.splits}
        return {
            "labels": source.labels,
            "class_names": source.class_names,
            "input": self.input_card(data),
            "training_data": {**self.data_card(data), "class_counts": counts},
            "diffusion": {
                "steps": STEPS,
                "schedule": "cosine",
                "unconditional_share": UNCONDITIONAL,
                "clip": data.extra["clip"],  # the training images' range, standardised: samples are kept in it
            },
            "sampling": dict(SAMPLING),
        }

    def summary(self, result: dict) -> str:
        loss = result["val"].get("loss", math.nan)
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val v mse {loss:.4f}\n"
            f"run written to {result['run']}; `medattn generate {result['run']} --n 1000 --out DIR` samples it"
        )

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool, features: str | None = None) -> dict:
        from medattn.tasks.synthesis.report import evaluate_run

        if tta:
            raise ConfigError("--tta means nothing to a synthesis run")
        return evaluate_run(run, data=data, split=split, features=features)

    def generate(
        self,
        run: Path,
        *,
        n: int,
        label: str | None,
        out: Path,
        seed: int,
        steps: int | None,
        guidance: float | None,
        overwrite: bool,
    ) -> dict:
        from medattn.tasks.synthesis.generate import generate_images

        options = {"label": label, "out": out, "seed": seed, "steps": steps, "guidance": guidance}
        return generate_images(run, n=n, overwrite=overwrite, **options)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        raise ConfigError(f"{run} makes images rather than predicting on them: use `medattn generate {run}`")

    def print_predictions(self, payload: dict) -> None:
        from medattn.tasks.synthesis.generate import print_generated

        print_generated(payload)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.synthesis.report import print_report

        print_report(metrics)

    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        raise ConfigError("a synthesis run's output is a predicted velocity: there is no class or region to explain")

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        raise ConfigError("a synthesis run's output is a predicted velocity: there is no class or region to explain")

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.synthesis.report import report_sections

        return report_sections(run)

    # -- cross-validation -------------------------------------------------------------------------------
    def score_fold(self, run: Path, source) -> dict:
        from medattn.data.tensors import prepare
        from medattn.engine.loaded import load_run
        from medattn.tasks.synthesis.train_set import validation_batch

        loaded = load_run(run)
        val = prepare(source, "val", loaded.intensity, loaded.size)
        return {"loss": velocity_loss(loaded.model, *validation_batch(val.x, val.y), device=None, amp=False)}


def velocity_loss(model, x, target, *, device, amp: bool, batch: int = 256) -> float:
    """Mean squared error of the predicted velocity over packed inputs x (N, C + 2, *S)."""
    import torch

    from medattn.engine.device import autocast

    device = device or next(model.parameters()).device
    was_training, total = model.training, 0.0
    model.eval()
    with torch.inference_mode(), autocast(device, amp):
        for start in range(0, len(x), batch):
            predicted = model(x[start : start + batch].to(device)).float().cpu()
            total += float(((predicted - target[start : start + batch]) ** 2).sum())
    model.train(was_training)
    return total / max(target.numel(), 1)


class VelocityLoss:
    """The engine's loss(model, output, target, device): MSE between the predicted and the true velocity."""

    def base(self, output, target):
        import torch.nn.functional as F

        return F.mse_loss(output.float(), target.float())

    def __call__(self, model, output, target, device):
        return self.base(output, target.to(device))
