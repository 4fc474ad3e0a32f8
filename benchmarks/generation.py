"""Generation benchmark, translation part: sequence-to-sequence translation on real MRI, against the two trivial
baselines, with the default recipe.

    .venv/bin/python benchmarks/generation.py                 # every experiment, both models
    .venv/bin/python benchmarks/generation.py --quick         # 2 epochs of FLAIR from T1 (a smoke run)

- lgg_flair: LGG brain MRI (65 patients, 128 x 128 slices; channels T1-pre, FLAIR, T1-post), T1-pre + T1-post
  to FLAIR (`--source-channels 0,2 --target-channels 1`), split by patient (70/15/15, seeded);
- lgg_t1post: the same slices, T1-pre to T1-post (`--source-channels 0 --target-channels 2`);
- hippocampus_sr: MSD Task04 volumes stored as 8-bit, 2x super-resolution (`--degrade downsample=2`), the 3D
  sanity check (unet_l1 only).
Each run: `train` with the default recipe and only `--model` changed, then `evaluate` on the test split: PSNR,
SSIM and MAE (whole image and foreground) averaged over patients with 95% bootstrap intervals, beside the mean
training image and a global intensity mapping of the source (fitted on the training split). A killed run resumes
from its checkpoint. Writes results/generation_translation.json and .md, and a figure of 6 test cases per
experiment (source, target, model, mean image, intensity mapping).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from common import timed_fit, write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXPERIMENTS = {
    "lgg_flair": {
        "data": "lgg_mri",
        "source_channels": [0, 2],
        "target_channels": [1],
        "models": ["pix2pix", "unet_l1"],
    },
    "lgg_t1post": {"data": "lgg_mri", "source_channels": [0], "target_channels": [2], "models": ["pix2pix", "unet_l1"]},
    "hippocampus_sr": {"data": "hippocampus_8bit.csv", "degrade": "downsample=2", "models": ["unet_l1"]},
}
TITLES = {
    "lgg_flair": "LGG: T1-pre + T1-post to FLAIR",
    "lgg_t1post": "LGG: T1-pre to T1-post",
    "hippocampus_sr": "Hippocampus 8-bit volumes (3D): 2x super-resolution",
}
KEYS = ("psnr", "ssim", "mae", "psnr_foreground", "ssim_foreground")


def eight_bit_volumes(work: Path) -> Path:
    """A CSV (`path`) of the Hippocampus volumes stored as uint8. The set mixes uint8 (0-255) and float32 volumes
    (up to 1.7 million): translation standardises targets with one training mean and spread and scores on one data
    range, which needs one intensity scale."""
    import nibabel as nib

    out = work / "hippocampus_8bit.csv"
    if not out.is_file():
        files = sorted((DATA / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))
        kept = [f for f in files if nib.load(f).get_data_dtype() == "uint8"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("path\n" + "".join(f"{f}\n" for f in kept))
    return out


def train_and_score(name: str, model: str, run: Path, *, seed: int, epochs: int) -> dict:
    from medattn.config import RunConfig
    from medattn.tasks import get_task

    spec = EXPERIMENTS[name]
    config = RunConfig(task="translation")
    data = eight_bit_volumes(run.parent) if spec["data"].endswith(".csv") else DATA / spec["data"]
    config.data.path, config.model.name, config.train.seed = str(data), model, seed
    config.data.source_channels, config.data.target_channels = spec.get("source_channels"), spec.get("target_channels")
    config.data.degrade, config.train.epochs = spec.get("degrade"), epochs
    task = get_task("translation")
    timed = timed_fit(config, run, lambda r: task.evaluate(r, data=None, split="test", tta=False))
    card = json.loads((run / "model.json").read_text())
    test = json.loads((run / "metrics.json").read_text())["test"]
    return {
        "model": model,
        "parameters": card["model"]["parameters"],
        "patch": card["input"]["patch"],
        "loss": card["training"]["loss"],
        "epochs": card["training"]["epochs_run"],
        "best_epoch": card["training"]["best_epoch"],
        "train_minutes": round(timed["train_minutes"], 2),
        "resumed_after_a_kill": timed["resumed"],
        "seconds_per_image": round(timed["seconds_per_image"], 3),
        "data_range": test["data_range"],
        "n": test["n"],
        "n_subjects": test["n_subjects"],
        "figure": test["figure"],
        **{k: test[k] for k in KEYS},
        **{f"{k}_ci": test.get(f"{k}_ci") for k in KEYS},
        "baselines": test["baselines"],
    }


def _cell(row: dict, key: str, digits: int) -> str:
    low, high = row.get(f"{key}_ci") or (float("nan"), float("nan"))
    return f"{row[key]:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def markdown(results: dict) -> str:
    lines = [
        "| Experiment | Method | PSNR dB (95% CI) | SSIM (95% CI) | MAE (95% CI) | PSNR fg | SSIM fg | epochs "
        "| train |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        first = next(iter(runs.values()))
        title = f"{TITLES[name]} ({first['n']} test images, {first['n_subjects']} subjects)"
        rows = [(r["model"], r, f"{r['epochs']}", f"{r['train_minutes']:.1f} min") for r in runs.values()]
        rows += [(f"baseline: {b.replace('_', ' ')}", first["baselines"][b], "–", "–") for b in first["baselines"]]
        for method, row, epochs, minutes in rows:
            lines.append(
                f"| {title} | {method} | {_cell(row, 'psnr', 2)} | {_cell(row, 'ssim', 3)} | {_cell(row, 'mae', 2)} | "
                f"{row['psnr_foreground']:.2f} | {row['ssim_foreground']:.3f} | {epochs} | {minutes} |"
            )
    notes = [
        "",
        "Intensities as stored (8-bit: data range the training targets' max - min, 255 for LGG); foreground:",
        "target above its minimum + 1% of the range. Means over patients (slices averaged per patient first).",
        "Figures: results/generation_translation_<experiment>.png (source, target, model, mean image, mapping).",
    ]
    return "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--quick", action="store_true", help="2 epochs of lgg_flair with both models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "generation"), help="runs (finished ones kept)")
    parser.add_argument("--out", default=str(ROOT / "results" / "generation_translation"))
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    names = ["lgg_flair"] if args.quick else args.experiments.split(",")
    epochs, suffix = (2, "-quick") if args.quick else (0, "")
    previous = Path(args.out).with_suffix(".json")
    results = json.loads(previous.read_text()) if previous.is_file() and not args.quick else {}
    out = Path(args.out + suffix)
    for name in names:
        for model in EXPERIMENTS[name]["models"]:
            run = Path(args.work) / f"{name}-{model}-{args.seed}{suffix}"
            result = train_and_score(name, model, run, seed=args.seed, epochs=epochs)
            results.setdefault(name, {})[model] = result
            print(json.dumps({"experiment": name, **result}), file=sys.stderr)
            figure = out.parent / f"{out.name}_{name}.png"
            if model == EXPERIMENTS[name]["models"][0]:
                figure.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(result["figure"], figure)
            write_results(out, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
