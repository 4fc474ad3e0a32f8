"""Segmentation benchmark on real data: MSD Task04 Hippocampus (3D) and ISBI 2012 EM membranes (2D).

    .venv/bin/python benchmarks/segmentation.py                          # both (about 45 min here)
    .venv/bin/python benchmarks/segmentation.py --tasks hippocampus --seeds 0
    .venv/bin/python benchmarks/segmentation.py --tasks isbi --folds 5 --isbi-models unet,attention_unet

Hippocampus: the default segmentation model (attention_unet) on a seeded 80/20 split by case (10% of the rest
for validation, the best epoch), scored on the held-out 20%: Dice, HD95 and ASSD in mm per class (anterior,
posterior). ISBI 2012: the 30 labelled slices in K folds by slice, unet vs attention_unet vs trans_unet in the
same run; Dice of the membrane class and pixel accuracy on each held-out fold. For every model: parameters,
training minutes, inference seconds per volume or image. Writes results/segmentation.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ISBI_MODELS = ("unet", "attention_unet", "trans_unet")

# Published reference points (README table): nnU-Net's 5-fold CV Dice on Task04 (Isensee et al. 2021,
# Nature Methods, supplementary) and the plain 3D U-Net figure quoted in the MSD paper (Antonelli et al. 2022).
PUBLISHED = {"nnU-Net (5-fold CV)": (0.90, 0.89), "plain U-Net (about)": (0.86, 0.86)}


def train_and_score(config, run: Path) -> dict:
    """Train `config` into `run`, score its test split; minutes of training, seconds of inference per case."""
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir
    from medattn.tasks import get_task

    run = prepare_run_dir(run, resume=False, force=True)
    started = time.perf_counter()
    result = fit(config, run)
    minutes = (time.perf_counter() - started) / 60
    started = time.perf_counter()
    test = get_task(config.task).evaluate(run, data=None, split="test", tta=False)
    seconds = (time.perf_counter() - started) / test["n"]
    card = json.loads((run / "model.json").read_text())
    return {
        "model": card["model"]["name"],
        "parameters": card["model"]["parameters"],
        "epochs": result["epochs_run"],
        "train_minutes": round(minutes, 2),
        "inference_seconds_per_case": round(seconds, 3),
        "n_test": test["n"],
        "dice_mean": test["dice_mean"],
        "dice_mean_ci": test["dice_mean_ci"],
        "dice_per_class": test["dice_per_class"],
        "hd95_mm_per_class": test["hd95_mm_per_class"],
        "assd_mm_per_class": test["assd_mm_per_class"],
        "pixel_accuracy": test["pixel_accuracy"],
    }


def hippocampus(seed: int, *, epochs: int, work: Path, model: str | None = None, minutes: float = 0.0) -> dict:
    from medattn.config import RunConfig

    config = RunConfig()
    config.data.path = str(DATA / "msd_hippocampus" / "dataset.json")
    config.task = "segmentation"
    config.model.name = model  # None: the task's default
    config.data.test_fraction, config.data.val_fraction = 0.2, 0.1
    config.train.seed, config.train.epochs, config.train.time_limit = seed, epochs, minutes
    return {"seed": seed, **train_and_score(config, work / f"hippocampus-{seed}")}


def isbi_folds(folds: int, *, seed: int, work: Path) -> list[Path]:
    """One CSV per fold over the 30 labelled slices, with membrane as class 1 (the files store it as 0)."""
    from PIL import Image

    source = DATA / "isbi2012_em" / "train"
    masks = work / "isbi-membrane"
    masks.mkdir(parents=True, exist_ok=True)
    names = sorted((p.name for p in (source / "image").glob("*.png")), key=lambda n: int(Path(n).stem))
    for name in names:  # 0 = membrane, 255 = cell interior -> 1 = membrane, 0 = the rest
        label = np.asarray(Image.open(source / "label" / name))
        Image.fromarray((label < 128).astype(np.uint8)).save(masks / name)
    order = np.random.default_rng(seed).permutation(len(names))
    manifests = []
    for k in range(folds):
        test = set(order[k::folds].tolist())
        rest = [i for i in order.tolist() if i not in test]
        val = set(rest[:3])  # three slices choose the best epoch
        path = work / f"isbi-fold{k}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "mask", "split"])
            for i, name in enumerate(names):
                split = "test" if i in test else "val" if i in val else "train"
                writer.writerow([str(source / "image" / name), str(masks / name), split])
        manifests.append(path)
    return manifests


def isbi(model: str, manifest: Path, *, fold: int, epochs: int, work: Path, minutes: float = 0.0) -> dict:
    from medattn.config import RunConfig

    config = RunConfig()
    config.data.path = str(manifest)
    config.task = "segmentation"
    config.model.name = model
    config.train.epochs, config.train.time_limit = epochs, minutes
    return {"fold": fold, **train_and_score(config, work / f"isbi-{model}-{fold}")}


def summary(runs: list[dict]) -> dict:
    def stats(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0

    classes = list(runs[0]["dice_per_class"])
    return {
        "model": runs[0]["model"],
        "parameters": runs[0]["parameters"],
        "dice_mean": stats([r["dice_mean"] for r in runs]),
        "dice_per_class": {c: stats([r["dice_per_class"][c] for r in runs]) for c in classes},
        "hd95_mm_per_class": {c: stats([r["hd95_mm_per_class"][c] for r in runs]) for c in classes},
        "pixel_accuracy": stats([r["pixel_accuracy"] for r in runs]),
        "max_train_minutes": max(r["train_minutes"] for r in runs),
        "inference_seconds_per_case": statistics.fmean(r["inference_seconds_per_case"] for r in runs),
        "runs": runs,
    }


def _spread(stats: tuple[float, float], n: int) -> str:
    return f" ± {stats[1]:.3f}" if n > 1 else ""


def markdown(results: dict) -> str:
    lines = []
    if "hippocampus" in results:
        res = results["hippocampus"]
        n = len(res["runs"])
        dice, hd = res["dice_per_class"], res["hd95_mm_per_class"]
        lines += [
            "| MSD Hippocampus (3D) | Dice anterior | Dice posterior | mean Dice | HD95 mm (ant./post.) | "
            "params | train time | inference |",
            "|---|---|---|---|---|---|---|---|",
            f"| **medattn {res['model']}**, 80/20 split by case, {n} seed{'s' if n > 1 else ''} | "
            f"**{dice['Anterior'][0]:.3f}**{_spread(dice['Anterior'], n)} | "
            f"**{dice['Posterior'][0]:.3f}**{_spread(dice['Posterior'], n)} | **{res['dice_mean'][0]:.3f}** | "
            f"{hd['Anterior'][0]:.2f} / {hd['Posterior'][0]:.2f} | {res['parameters'] / 1e6:.2f}M | "
            f"≤ {res['max_train_minutes']:.1f} min | {res['inference_seconds_per_case']:.2f} s/volume |",
        ]
        for method, (anterior, posterior) in PUBLISHED.items():
            lines.append(f"| {method} (published) | {anterior:.2f} | {posterior:.2f} | | | | | |")
        lines.append("")
    if "isbi" in results:
        folds = len(next(iter(results["isbi"].values()))["runs"])
        lines += [
            f"| ISBI 2012 EM ({folds}-fold CV by slice) | membrane Dice | pixel accuracy | params | "
            "train time per fold | inference |",
            "|---|---|---|---|---|---|",
        ]
        for res in results["isbi"].values():
            dice, accuracy = res["dice_per_class"]["foreground"], res["pixel_accuracy"]  # foreground = membrane
            lines.append(
                f"| medattn {res['model']} | {dice[0]:.3f} ± {dice[1]:.3f} | {accuracy[0]:.3f} ± {accuracy[1]:.3f} | "
                f"{res['parameters'] / 1e6:.2f}M | ≤ {res['max_train_minutes']:.1f} min | "
                f"{res['inference_seconds_per_case']:.2f} s/image |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hippocampus,isbi")
    parser.add_argument("--seeds", default="0", help="hippocampus split/training seeds")
    parser.add_argument("--hippocampus-epochs", type=int, default=0, help="0 = automatic")
    parser.add_argument("--folds", type=int, default=5, help="ISBI folds")
    parser.add_argument("--isbi-epochs", type=int, default=0, help="0 = automatic")
    parser.add_argument("--isbi-models", default=",".join(ISBI_MODELS))
    parser.add_argument("--out", default=str(ROOT / "results" / "segmentation"))
    parser.add_argument("--update", action="store_true", help="keep the other tasks' results already in --out")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    previous = Path(args.out).with_suffix(".json")
    tasks = args.tasks.split(",")
    results = json.loads(previous.read_text()) if args.update and previous.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "hippocampus" in tasks:
            runs = []
            for seed in (int(s) for s in args.seeds.split(",")):
                runs.append(hippocampus(seed, epochs=args.hippocampus_epochs, work=work))
                print(json.dumps(runs[-1]), file=sys.stderr)
            results["hippocampus"] = summary(runs)
        if "isbi" in tasks:
            manifests = isbi_folds(args.folds, seed=0, work=work)
            results["isbi"] = {}
            for model in args.isbi_models.split(","):
                runs = []
                for fold, manifest in enumerate(manifests):
                    runs.append(isbi(model, manifest, fold=fold, epochs=args.isbi_epochs, work=work))
                    print(json.dumps(runs[-1]), file=sys.stderr)
                results["isbi"][model] = summary(runs)
    write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
