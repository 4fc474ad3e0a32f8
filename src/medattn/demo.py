"""`medattn demo`: phantom data -> train attention models -> evaluate -> metrics and where the runs are.

Classification: the phantom is written in the MedMNIST .npz layout, so the demo exercises the same path as
real data. Segmentation: phantom images and organ/lesion masks written as PNG files under images/ and masks/,
an Attention U-Net trained on them, scored in mm, and one predicted mask written beside the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medattn.errors import RunDirError


def run_demo(out: Path, *, force: bool, verbose: bool = True) -> dict:
    from medattn.config import DEFAULT_OPTIONS, RunConfig
    from medattn.data.phantom import save_medmnist_npz
    from medattn.evaluate.report import evaluate_run, print_report
    from medattn.progress import console
    from medattn.runs import prepare_run_dir
    from medattn.train.engine import fit

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunDirError(f"demo folder {out} already exists; pass --force to replace it")
        shutil.rmtree(out)
    say = console().print
    data = out / "data" / "phantom_classification.npz"
    say(f"[bold]1/5[/] writing 2D phantom images (lesion present / absent) to {data}")
    save_medmnist_npz(data, n_train=800, n_val=200, n_test=400, spatial_dims=2, size=32, num_classes=2, seed=0)
    config = RunConfig()
    config.data.path = str(data)
    config.model.name = "attn_resnet"  # the 2D default with one block a stage, so the demo stays under 3 minutes
    config.model.options = {**DEFAULT_OPTIONS[2], "depths": [1, 1, 1]}
    config.train.epochs = 25
    config.train.seed = 0
    run = prepare_run_dir(out / "classification", resume=False, force=False)
    say(
        f"[bold]2/5[/] training {config.model.name} (CBAM channel + spatial attention) for {config.train.epochs} epochs"
    )
    result = fit(config, run)
    say("[bold]3/5[/] evaluating on the held-out test split")
    metrics = evaluate_run(run, split="test")
    if verbose:
        print_report(metrics)
    summary = {
        "classification": {
            "run": str(run),
            "auc": metrics["auc"],
            "acc": metrics["acc"],
            "n": metrics["n"],
            "best_epoch": result["best_epoch"],
        },
        "segmentation": _segmentation(out, say=say, verbose=verbose),
        "outputs": str(out.resolve()),
    }
    if verbose:
        seg = summary["segmentation"]
        print(f"\nDemo outputs are in {out.resolve()}:")
        print(f"  {run}/: model.safetensors, model.json, config.yaml, history.csv, metrics.json")
        print(f"  {seg['run']}/: the same for the segmentation run; predicted mask {seg['predicted_mask']}")
    return summary


def _segmentation(out: Path, *, say, verbose: bool) -> dict:
    """Phantom PNG images + organ/lesion masks -> Attention U-Net -> test Dice and HD95 -> one predicted mask."""
    import numpy as np
    from PIL import Image

    from medattn.config import RunConfig
    from medattn.data.phantom import make_segmentation_set
    from medattn.evaluate.report import evaluate_run, print_report
    from medattn.runs import prepare_run_dir
    from medattn.segment_predict import predict_masks
    from medattn.train.segment import fit_segmentation

    data = out / "data" / "phantom_segmentation"
    say(f"[bold]4/5[/] writing 2D phantom images with organ (1) and lesion (2) masks to {data}")
    images, masks = make_segmentation_set(n=120, spatial_dims=2, size=64, seed=0)
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray((image[0] * 255).clip(0, 255).astype(np.uint8)).save(data / "images" / f"case{i:03d}.png")
        Image.fromarray(mask).save(data / "masks" / f"case{i:03d}.png")
    config = RunConfig()
    config.data.path = str(data)
    config.data.class_names = ["background", "organ", "lesion"]
    config.model.name = "attention_unet"
    config.model.options = {"channels": [16, 32, 64]}
    config.train.epochs, config.train.seed = 25, 0
    run = prepare_run_dir(out / "segmentation", resume=False, force=False)
    say(f"[bold]5/5[/] training {config.model.name} (attention gates on the skips) for {config.train.epochs} epochs")
    fit_segmentation(config, run)
    metrics = evaluate_run(run, split="test")
    if verbose:
        print_report(metrics)
    predicted = predict_masks(run, [data / "images" / "case000.png"], out_dir=run / "predictions")
    return {
        "run": str(run),
        "dice_mean": metrics["dice_mean"],
        "dice_per_class": metrics["dice_per_class"],
        "hd95_mm_per_class": metrics["hd95_mm_per_class"],
        "n": metrics["n"],
        "predicted_mask": predicted["predictions"][0]["mask"],
    }
