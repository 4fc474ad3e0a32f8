"""Segmentation as a task of the engine: random patches with foreground oversampling, Dice + cross-entropy.

Data: a folder with images/ and masks/, an MSD dataset.json, or a CSV with image and mask columns (sources.py).
Optional deep supervision (auxiliary decoder outputs weighted 1/2, 1/4, ... as in nnU-Net). After every epoch each
validation case is segmented whole by sliding-window inference with Gaussian blending; the best epoch is the one
with the highest mean foreground Dice. Defaults: attention_unet, loss dice_ce, batch 16 (2D) or 2 (3D) patches,
no weight average; epochs 0 means about AUTO_PATCHES patches in total. With clinical values (--clinical), each
case's vector FiLM-modulates the U-Net's bottleneck (models/clinical.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.data.clinical_images import CLINICAL_FIELDS, clinical_card, clinical_options
from medattn.errors import ConfigError
from medattn.registry import TASKS
from medattn.tasks.base import Pool, Task, TaskData, auto_epochs, listed_fold_source

SEGMENTATION_MODEL = "attention_unet"
SEGMENTATION_BATCH = {2: 16, 3: 2}
AUTO_PATCHES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 4000, 10, 100
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7  # false negatives cost more than false positives: tiny structures


@TASKS.register("segmentation", tasks=(), description="a label per pixel or voxel, from image/mask pairs")
class SegmentationTask(Task):
    name = "segmentation"
    description = "a label per pixel or voxel"
    layouts = "a folder with images/ and masks/ (same names), an MSD dataset.json, a CSV image,mask"
    model_tag = "segmentation"
    fields = (
        frozenset(
            {
                "data.patch",
                "data.spacing",
                "train.foreground_fraction",
                "data.modalities",
                "model.fusion",
                "train.modality_dropout",
            }
        )
        | CLINICAL_FIELDS
    )
    losses = ("dice_ce", "focal", "tversky")
    select_metrics = ("dice",)
    lower_is_better = frozenset({"loss", "hd95_mm"})
    item = "patches"
    dense = True
    fold_metric = "dice"
    summary_keys = ("dice", "hd95_mm")
    has_demo = True
    recognition_order = 10
    predict_options = frozenset({"tta", "out_dir", "overwrite"})

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.tasks.segment.sources import is_segmentation_data

        return is_segmentation_data(path)

    def open(self, config: RunConfig):
        from medattn.tasks.segment.data import open_split

        return open_split(config)

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.tasks.segment.data import load_segmentation_data

        seg = load_segmentation_data(config, source)
        return TaskData(
            source=seg.source,
            spatial_dims=seg.spatial_dims,
            in_channels=seg.in_channels,
            num_outputs=seg.num_classes,
            n_train=len(seg.train_x),
            modality=seg.source.modality,
            channel_names=seg.source.channel_names,
            notes=seg.notes,
            extra={"seg": seg},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return SEGMENTATION_MODEL, {}

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        return {
            "train.batch_size": SEGMENTATION_BATCH[data.spatial_dims],
            "train.loss": "dice_ce",
            "train.select_metric": "dice",
            "train.ema": 0.0,
        }

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        return auto_epochs(AUTO_PATCHES, len(train_set), low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        config = super().resolve(config, data, train_set)
        plan = data.extra["seg"].plan
        config.data.patch, config.data.spacing = list(plan.patch), plan.spacing or "none"
        config.data.class_names = list(data.extra["seg"].class_names)
        if config.train.foreground_fraction is None:
            config.train.foreground_fraction = train_set.sampler.foreground_fraction
        clinical_options(config, data.extra["seg"].clinical, fusion="film")  # FiLM of the bottleneck
        return config

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData):
        from medattn.tasks.segment.train_set import PatchTrainSet

        return PatchTrainSet(data.extra["seg"], config)

    def distillation(self, data: TaskData) -> str:
        return "softmax"  # per voxel, over the classes

    def loss(self, config: RunConfig, data: TaskData):
        return DeepSupervisionLoss(build_segmentation_loss(config.train.loss, gamma=config.train.focal_gamma))

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        """Mean Dice (foreground classes, then cases) and per class, and mean HD95 in mm, over validation cases."""
        from medattn.engine.inferers import sliding_window
        from medattn.models.clinical import BoundClinical
        from medattn.tasks.segment.inference import softmax
        from medattn.tasks.segment.metrics import case_metrics

        seg = data.extra["seg"]
        rows = []
        for index, (x, y, spacing) in enumerate(zip(seg.val_x, seg.val_y, seg.val_spacing, strict=True)):
            net = model if seg.val_clinical is None else BoundClinical(model, seg.val_clinical[index])
            probs = sliding_window(net, x, patch=seg.plan.patch, transform=softmax, device=device, amp=amp)
            rows.append(
                case_metrics(probs.argmax(dim=0).numpy(), y.numpy(), num_classes=seg.num_classes, spacing=spacing)
            )
        classes = sorted(rows[0])
        dice = np.array([[row[c]["dice"] for c in classes] for row in rows])  # (cases, classes)
        hd95 = np.array([[row[c]["hd95_mm"] for c in classes] for row in rows])
        scores = {"dice": float(dice.mean())}
        scores["hd95_mm"] = float(np.nanmean(hd95)) if np.isfinite(hd95).any() else math.nan
        names = seg.class_names
        scores.update({f"dice_{names[c]}": float(v) for c, v in zip(classes, dice.mean(axis=0), strict=True)})
        return scores

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        seg, source = data.extra["seg"], data.source
        return {
            "class_names": seg.class_names,
            "input": seg.plan.to_card(),
            "clinical": clinical_card(seg.clinical, seg.clinical_join),
            "training_data": {
                "source": source.path,
                "kind": source.kind,
                "splits": {name: len(cases) for name, cases in source.splits.items()},
                "notes": data.notes,
            },
        }

    def summary(self, result: dict) -> str:
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val dice {result['val']['dice']:.4f}"
            f"\nrun written to {result['run']}"
        )

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.segment.report import evaluate_segmentation

        return evaluate_segmentation(run, data=data, split=split, tta=tta)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.segment.predict import predict_masks

        return predict_masks(run, files, out_dir=out_dir, overwrite=overwrite, tta=tta, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.segment.report import print_segmentation_report

        print_segmentation_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        from medattn.tasks.segment.predict import print_masks

        print_masks(payload)

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.segment.inspect import inspect_segmentation

        return inspect_segmentation(config.data.path, progress=progress)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.segment.inspect import print_inspect

        print_inspect(report)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.segment.report_html import report_sections

        return report_sections(run, data=data, split=split)

    # -- cross-validation -------------------------------------------------------------------------------
    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        from medattn.tasks.segment.explain import region_target

        return region_target(card, output, target, mask)

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        from medattn.tasks.segment.explain import segment_cases

        return segment_cases(run, data=data, split=split)

    def fold_pool(self, source) -> Pool:
        cases = [*source.splits["train"], *source.splits.get("val", [])]
        grouped = all(c.patient_id for c in cases)
        groups = np.asarray([c.patient_id for c in cases]) if grouped else None
        return Pool(len(cases), None, groups, items=cases, unit="cases")

    def fold_source(self, source, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str):
        return listed_fold_source(source, pool, train, held_out, note)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.segment.report import score_cases

        metrics = score_cases(run, source.splits["val"], where=f"{source.path} [held-out fold]")
        scalars = {"dice": metrics["dice_mean"], "pixel_accuracy": metrics["pixel_accuracy"]}
        finite = [v for v in metrics["hd95_mm_per_class"].values() if v is not None and math.isfinite(v)]
        scalars["hd95_mm"] = float(np.mean(finite)) if finite else math.nan
        scalars.update({f"dice_{name}": value for name, value in metrics["dice_per_class"].items()})
        return scalars

    def spatial_dims(self, config: RunConfig) -> int:
        from medattn.data.readers import one_slice_as_2d, read_image
        from medattn.tasks.segment.sources import open_segmentation

        case = open_segmentation(config.data.path).splits["train"][0]
        return one_slice_as_2d(read_image(case.mask)[0]).ndim - 1

    # -- demo -------------------------------------------------------------------------------------------
    def demo(self, out: Path, *, say) -> RunConfig:
        """Phantom PNG images + organ/lesion masks for an Attention U-Net; one predicted mask afterwards."""
        from PIL import Image

        from medattn.data.phantom import make_segmentation_set

        data = out / "data" / "phantom_segmentation"
        say(f"writing 2D phantom images with organ (1) and lesion (2) masks to {data}")
        images, masks = make_segmentation_set(n=120, spatial_dims=2, size=64, seed=0)
        for folder in ("images", "masks"):
            (data / folder).mkdir(parents=True)
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            picture = (image[0] * 255).clip(0, 255).astype(np.uint8)
            Image.fromarray(picture).save(data / "images" / f"case{i:03d}.png")
            Image.fromarray(mask).save(data / "masks" / f"case{i:03d}.png")
        config = RunConfig(task=self.name)
        config.data.path = str(data)
        config.data.class_names = ["background", "organ", "lesion"]
        config.model.name = SEGMENTATION_MODEL
        config.model.options = {"channels": [16, 32, 64]}
        config.train.epochs = 25
        return config

    def demo_files(self, config: RunConfig) -> list[Path]:
        return [Path(config.data.path) / "images" / "case000.png"]


def build_segmentation_loss(name: str, *, gamma: float = 2.0):
    """loss(logits (B, K, *S), labels (B, *S) int64) -> scalar; Dice over the foreground classes, batch-wise."""
    import monai.losses
    import torch.nn.functional as F

    common = {"to_onehot_y": True, "softmax": True, "include_background": False, "batch": True}
    if name == "dice_ce":
        loss = monai.losses.DiceCELoss(**common)
    elif name == "focal":
        loss = monai.losses.DiceFocalLoss(gamma=gamma, **common)
    elif name == "tversky":
        tversky = monai.losses.TverskyLoss(alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA, **common)
        return lambda logits, y: tversky(logits, y[:, None]) + F.cross_entropy(logits, y)
    else:
        raise ConfigError(f"train.loss {name!r} is not one of {', '.join(SegmentationTask.losses)}")
    return lambda logits, y: loss(logits, y[:, None])


def supervised_loss(loss_fn, model, logits, y):
    """The loss of the main output, plus the deep supervision outputs weighted 1/2, 1/4, ... (all normalised)."""
    aux = getattr(model, "aux_logits", None) or []
    weights = [1.0] + [0.5 ** (i + 1) for i in range(len(aux))]
    total = sum(w * loss_fn(out.float(), y) for w, out in zip(weights, [logits, *aux], strict=True))
    return total / sum(weights)


class DeepSupervisionLoss:
    """The engine's loss(model, logits, masks, device), deep supervision included."""

    def __init__(self, base) -> None:
        self.base = base

    def __call__(self, model, logits, y, device):
        return supervised_loss(self.base, model, logits.float(), y.to(device))
