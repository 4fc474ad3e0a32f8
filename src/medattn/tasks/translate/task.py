"""Image-to-image translation as a task of the engine: a source image (one or several channels: sequences,
contrasts, a degraded copy) to a target image on the same grid, 2D and 3D.

Data (sources.py): paired folders, a CSV source,target, an npz with source and target arrays, the channels of one
multi-channel set (--source-channels 0,2 --target-channels 1), or single images degraded into pairs (--degrade).
Models: `pix2pix` (the generator against a conditional PatchGAN, L1 + LSGAN or hinge) and `unet_l1` (the same
generator on L1 alone). Training draws one random patch per pair an epoch; validation translates up to VAL_IMAGES
validation images whole (sliding window, Gaussian blending) and scores PSNR, SSIM and MAE on the stored
intensities; the best epoch has the highest PSNR; the generator's weight average (EMA) is what is validated and
saved. Each epoch writes RUN/validation/epoch-NNN.png: sources, targets and predictions, to watch it train.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.errors import ConfigError
from medattn.registry import TASKS
from medattn.tasks.base import Pool, Task, TaskData, auto_epochs, listed_fold_source

DEFAULT_MODEL = "pix2pix"
DEFAULT_OPTIONS = {2: {}, 3: {"channels": [8, 16, 32, 64], "embed_dim": 32}}
BATCH = {2: 8, 3: 2}
# Epochs show the model about AUTO_PIXELS patch pixels in all (about 15,000 patches of 64 x 64), within [low, high]:
# on LGG's 1,626 training slices that is 10 epochs, 7-12 minutes for unet_l1 and 13-22 for pix2pix on one shared core
# of this CPU (benchmarks/generation.py); a few hundred slices get more epochs of the same total.
AUTO_PIXELS, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 60_000_000, 4, 200
VAL_IMAGES = {2: 32, 3: 8}  # validation images scored each epoch (evenly spaced); evaluate scores all
GRID_IMAGES = 4  # rows of the per-epoch validation picture


@TASKS.register("translation", tasks=(), description="image-to-image translation: a source image to a target")
class TranslationTask(Task):
    name = "translation"
    description = "a source image to a target image on the same grid (sequence to sequence, denoising, resolution)"
    layouts = (
        "a folder with source/ and target/, a CSV source,target, an npz with source and target arrays; one "
        "multi-channel set with --source-channels/--target-channels; single images with --degrade"
    )
    model_tag = "translation"
    fields = frozenset(
        {"data.patch", "data.source_channels", "data.target_channels", "data.degrade", "data.target_range"}
    )
    losses = ("lsgan", "hinge", "l1")
    select_metrics = ("psnr", "ssim", "mae", "loss")
    lower_is_better = frozenset({"loss", "mae"})
    item = "patches"
    dense = True
    fold_metric = "psnr"
    summary_keys = ("psnr", "ssim", "mae", "psnr_foreground", "ssim_foreground")
    predict_options = frozenset({"out_dir", "overwrite"})
    explains = False  # an image, not a class score or a region: `medattn explain`'s maps do not apply
    recognition_order = 12

    # -- data -------------------------------------------------------------------------------------------
    def recognises(self, path: Path) -> bool:
        from medattn.tasks.translate.sources import is_paired_data

        return is_paired_data(path)

    def open(self, config: RunConfig):
        from medattn.tasks.translate.sources import ensure_splits, open_pairs

        data = config.data
        source = open_pairs(
            data.path,
            source_channels=data.source_channels,
            target_channels=data.target_channels,
            degrade=data.degrade,
        )
        source.modality = data.modality if data.modality != "auto" else source.modality
        source.notes += ensure_splits(
            source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
        )
        return source

    def load(self, config: RunConfig, *, source=None) -> TaskData:
        from medattn.progress import track
        from medattn.tasks.translate.data import load_translation_data

        source = self.open(config) if source is None else source
        reading = lambda items: track(items, "reading pairs")  # noqa: E731
        loaded = load_translation_data(config, source, progress=reading)
        return TaskData(
            source=source,
            spatial_dims=loaded.spatial_dims,
            in_channels=loaded.in_channels,
            num_outputs=loaded.out_channels,
            n_train=len(loaded.train_x),
            modality=source.modality,
            notes=loaded.notes,
            extra={"translation": loaded},
        )

    # -- configuration ------------------------------------------------------------------------------------
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return DEFAULT_MODEL, dict(DEFAULT_OPTIONS[spatial_dims])

    def defaults(self, config: RunConfig, data: TaskData) -> dict:
        from medattn.models.translation import ADVERSARIAL

        return {
            "train.batch_size": BATCH[data.spatial_dims],
            "train.loss": "lsgan" if config.model.name in ADVERSARIAL else "l1",
            "train.select_metric": "psnr",
            "train.ema": 0.99,
        }

    def auto_epochs(self, config: RunConfig, data: TaskData, train_set) -> int:
        pixels = len(train_set) * math.prod(data.extra["translation"].patch)
        return auto_epochs(AUTO_PIXELS, pixels, low=AUTO_EPOCHS_MIN, high=AUTO_EPOCHS_MAX)

    def check(self, config: RunConfig) -> None:
        from medattn.models.translation import ADVERSARIAL
        from medattn.tasks.translate.loss import ADVERSARIAL_LOSSES

        super().check(config)
        model = config.model.name or DEFAULT_MODEL
        if config.train.loss in ADVERSARIAL_LOSSES and model not in ADVERSARIAL:
            raise ConfigError(
                f"train.loss {config.train.loss!r} trains against a discriminator; {model} is trained on L1 alone "
                f"(--loss l1), or use {', '.join(sorted(ADVERSARIAL))}"
            )

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        config = super().resolve(config, data, train_set)
        config.data.patch = list(data.extra["translation"].patch)
        return config

    # -- training -----------------------------------------------------------------------------------------
    def train_set(self, config: RunConfig, data: TaskData):
        from medattn.tasks.translate.train_set import PairTrainSet

        return PairTrainSet(data.extra["translation"], config)

    def loss(self, config: RunConfig, data: TaskData):
        from medattn.tasks.translate.loss import TranslationLoss

        return TranslationLoss(config, data)

    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict:
        """PSNR, SSIM and MAE (stored intensities) and L1 (standardised) over evenly spaced validation images."""
        from medattn.tasks.translate.inference import translate
        from medattn.tasks.translate.metrics import image_scores

        loaded = data.extra["translation"]
        count = len(loaded.val_x)
        chosen = np.unique(np.linspace(0, count - 1, min(count, VAL_IMAGES[data.spatial_dims])).round().astype(int))
        rows, losses, shown = [], [], []
        for i in chosen:
            pred = translate(model, loaded.val_x[i], patch=loaded.patch, device=device, amp=amp)
            losses.append(float(loss_fn.base(pred, loaded.val_y[i])))
            stored = loaded.scale.inverse(pred).double().numpy()
            truth = loaded.scale.inverse(loaded.val_y[i]).double().numpy()
            rows.append(image_scores(stored, truth, data_range=loaded.scale.data_range))
            if len(shown) < GRID_IMAGES:
                shown.append((loaded.val_x[i].numpy(), truth, stored))
        if data.run is not None:
            from medattn.tasks.translate.figures import case_row, mosaic, write_png

            low, high = loaded.scale.low, loaded.scale.high
            picture = mosaic([case_row(x, [t, p], low=low, high=high) for x, t, p in shown])
            write_png(data.run / "validation" / f"epoch-{data.epoch + 1:03d}.png", picture)
        scores = {key: float(np.nanmean([r[key] for r in rows])) for key in ("psnr", "ssim", "mae")}
        scores["loss"] = float(np.mean(losses))
        return scores

    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        from medattn.engine.inputs import InputSpec
        from medattn.tasks.translate.baselines import fit_baselines, save_baselines

        loaded, source = data.extra["translation"], data.source
        if data.run is not None:
            save_baselines(data.run, fit_baselines(loaded.train_x, loaded.train_y))
        spec = InputSpec(
            spatial_dims=data.spatial_dims,
            channels=data.in_channels,
            intensity=loaded.intensity,
            patch=list(loaded.patch),
            source_spacing=loaded.source_spacing,
        )
        return {
            "input": spec.to_card(),
            "target": {**loaded.scale.to_card(), "channels": data.num_outputs},
            "translation": {
                "source_channels": source.source_channels,
                "target_channels": source.target_channels,
                "degrade": source.degrade,
                "source_dtype": loaded.source_dtype,
                "validation_images": min(len(loaded.val_x), VAL_IMAGES[data.spatial_dims]),
            },
            "training_data": {
                "source": source.path,
                "kind": source.kind,
                "splits": {name: len(pairs) for name, pairs in source.splits.items()},
                "notes": data.notes,
            },
        }

    def summary(self, result: dict) -> str:
        val = result["val"]
        return (
            f"best epoch {result['best_epoch']}/{result['epochs_run']}: val psnr {val.get('psnr', math.nan):.2f} dB, "
            f"ssim {val.get('ssim', math.nan):.3f}, mae {val.get('mae', math.nan):.4g}\nrun written to {result['run']}"
        )

    def progress_text(self, scores: dict, best: dict) -> str:
        return f"val psnr {scores['psnr']:.2f} ssim {scores['ssim']:.3f} (best psnr {best['scores'].get('psnr'):.2f})"

    # -- using a finished run ------------------------------------------------------------------------------
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        from medattn.tasks.translate.report import evaluate_run

        return evaluate_run(run, data=data, split=split, tta=tta)

    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        from medattn.tasks.translate.predict import predict_files

        return predict_files(run, files, out_dir=out_dir, overwrite=overwrite, series=series)

    def print_report(self, metrics: dict) -> None:
        from medattn.tasks.translate.report import print_report

        print_report(metrics)

    def print_predictions(self, payload: dict) -> None:
        for row in payload["predictions"]:
            print(f"{row['file']}: {row['output']} (side by side: {row['picture']})")

    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        from medattn.tasks.translate.report import inspect_pairs

        return inspect_pairs(config, self, progress=progress)

    def print_inspect(self, report: dict) -> None:
        from medattn.tasks.translate.report import print_inspect

        print_inspect(report)

    # -- explanation --------------------------------------------------------------------------------------
    def explain_target(self, card: dict, output, *, target: str | None, mask=None):
        raise ConfigError(
            "a translation run outputs an image: medattn explain's maps explain a class score or a region; see its "
            "images with medattn predict or medattn report"
        )

    def explain_cases(self, run: Path, *, data: str | None, split: str):
        return self.explain_target({}, None, target=None)

    def report_sections(self, run: Path, *, data: str | None, split: str) -> list:
        from medattn.tasks.translate.report import report_sections

        return report_sections(run, data=data, split=split)

    # -- cross-validation -------------------------------------------------------------------------------
    def fold_pool(self, source) -> Pool:
        pairs = [*source.splits["train"], *source.splits.get("val", [])]
        grouped = all(p.patient_id for p in pairs)
        return Pool(len(pairs), None, np.asarray([p.patient_id for p in pairs]) if grouped else None, pairs, "pairs")

    def fold_source(self, source, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str):
        return listed_fold_source(source, pool, train, held_out, note)

    def score_fold(self, run: Path, source) -> dict:
        from medattn.tasks.translate.report import score_split

        metrics = score_split(run, source, "val")
        return {k: v for k, v in metrics["model"].items() if k in self.summary_keys}

    def spatial_dims(self, config: RunConfig) -> int:
        from medattn.tasks.translate.data import read_pair

        source = self.open(config)
        return read_pair(source, source.splits["train"][0])[0].ndim - 1
