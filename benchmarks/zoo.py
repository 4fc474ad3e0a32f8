"""The model zoo side by side: every registered classifier on MedMNIST (official splits) and every segmenter on
MSD Hippocampus (the split of benchmarks/segmentation.py) and ISBI 2012 (the first of its folds), with the default
recipe (only the model changes) under one time budget per run (`--minutes`, train.time_limit: the first epoch is
timed and the automatic epochs cut to what fits, the schedule rebuilt for them), so a user with a small data set can
see what each costs and gives.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo.py --update        # the whole zoo: about 2.5 h here
    .venv/bin/python benchmarks/zoo.py --minutes 8,12 --out results/zoo-8min  # a night: 8 / 12 min per run
    .venv/bin/python benchmarks/zoo.py --models none --update            # only rewrite the tables
    .venv/bin/python benchmarks/zoo.py --datasets breastmnist --seeds 0 --epochs 10 --update
    .venv/bin/python benchmarks/zoo.py --only classification --models vgg16,resnet50 --update

Per run: test AUC and ACC with bootstrap 95% CIs (classification) or mean Dice with its CI (segmentation),
parameters, training images/s (from the model card), inference ms per image (forward passes over the test
split, batch 64, timed in the same run), training minutes. Writes results/zoo.json and results/zoo.md, after every
run, so a killed run resumes with --update (finished rows are kept). Each table marks the Pareto front: no other
model is at least as accurate and both faster to train and smaller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLASSIFICATION = ("breastmnist", "pneumoniamnist", "adrenalmnist3d")
SEGMENTATION = ("hippocampus", "isbi")


def inference_ms(run: Path, x, *, images: int = 192) -> float:
    """Milliseconds per image of the run's model on the first `images` of `x` (N, C, *S), batch 64, after one
    warm-up batch (a large 3D model takes seconds a volume here: the whole test split would cost more than its
    training budget)."""
    x = x[:images]
    import torch

    from medattn.engine.loaded import load_run

    model = load_run(run).model
    with torch.no_grad():
        model(x[:64])
        started = time.perf_counter()
        for start in range(0, len(x), 64):
            model(x[start : start + 64])
    return 1000 * (time.perf_counter() - started) / len(x)


def classify(dataset: str, model: str, seed: int, *, epochs: int | None, minutes: float, work: Path) -> dict:
    from medattn.config import RunConfig
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir
    from medattn.tasks.classify.report import evaluate_run

    config = RunConfig()
    config.data.path = str(DATA / "medmnist" / f"{dataset}.npz")
    config.model.name, config.train.seed = model, seed
    if epochs:
        config.train.epochs = epochs
    config.train.time_limit = minutes
    run = prepare_run_dir(work / f"{dataset}-{model}-{seed}", resume=False, force=True)
    started = time.perf_counter()
    fit(config, run)
    minutes = (time.perf_counter() - started) / 60
    test = evaluate_run(run, split="test")
    card = json.loads((run / "model.json").read_text())
    import torch

    from medattn.data.medmnist import read_medmnist
    from medattn.data.preprocess import to_unit

    images, _ = read_medmnist(config.data.path, "test")
    intensity = card["input"]["intensity"]
    x = (torch.from_numpy(to_unit(images, _intensity(intensity))) - intensity["mean"]) / intensity["std"]
    return {
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "score": test["auc"],
        "score_ci": test.get("auc_ci"),
        "acc": test["acc"],
        "acc_ci": test.get("acc_ci"),
        "parameters": card["model"]["parameters"],
        "epochs": card["training"]["epochs_run"],
        "train_minutes": round(minutes, 2),
        "train_images_per_second": card["training"]["images_per_second"],
        "inference_ms_per_image": round(inference_ms(run, x), 3),
    }


def _intensity(values: dict):
    from medattn.data.preprocess import Intensity

    return Intensity.from_dict(values)


def segment(dataset: str, model: str, seed: int, *, epochs: int | None, minutes: float, work: Path) -> dict:
    """Hippocampus: the segmentation benchmark's 80/20 split by case; ISBI: its first fold (5 folds by slice)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from segmentation import hippocampus, isbi, isbi_folds

    if dataset == "hippocampus":
        row = hippocampus(seed, epochs=epochs or 0, work=work / model, model=model, minutes=minutes)
    else:
        manifest = isbi_folds(5, seed=seed, work=work)[0]
        row = isbi(model, manifest, fold=0, epochs=epochs or 0, work=work, minutes=minutes)
    return {
        "dataset": dataset,
        "model": row["model"],
        "seed": seed,
        "score": row["dice_mean"],
        "score_ci": row.get("dice_mean_ci"),
        "parameters": row["parameters"],
        "epochs": row["epochs"],
        "train_minutes": row["train_minutes"],
        "inference_ms_per_image": round(1000 * row["inference_seconds_per_case"], 1),
    }


def pareto(rows: list[dict]) -> set[str]:
    """Models no other beats: none is at least as accurate, as fast at inference and as small, with one of the three
    strictly better. Every run has the same training budget, so its training time is not a cost that tells them
    apart; inference time is."""
    front = set()
    for a in rows:
        dominated = any(
            b["score"] >= a["score"]
            and b["inference_ms_per_image"] <= a["inference_ms_per_image"]
            and b["parameters"] <= a["parameters"]
            and (b["score"], -b["inference_ms_per_image"], -b["parameters"])
            != (a["score"], -a["inference_ms_per_image"], -a["parameters"])
            for b in rows
        )
        if not dominated:
            front.add(a["model"])
    return front


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (dataset, model): the mean over seeds."""
    rows = []
    for key in sorted({(r["dataset"], r["model"]) for r in runs}):
        group = [r for r in runs if (r["dataset"], r["model"]) == key]

        def mean(name: str, group: list[dict] = group) -> float:
            return statistics.fmean(r[name] for r in group if r.get(name) is not None)

        rows.append(
            {
                "dataset": key[0],
                "model": key[1],
                "seeds": len(group),
                "score": mean("score"),
                "score_ci": group[0]["score_ci"] if len(group) == 1 else None,
                "acc": mean("acc") if group[0].get("acc") is not None else None,
                "parameters": group[0]["parameters"],
                "train_minutes": mean("train_minutes"),
                "epochs": mean("epochs"),
                "train_images_per_second": (
                    mean("train_images_per_second") if group[0].get("train_images_per_second") else None
                ),
                "inference_ms_per_image": mean("inference_ms_per_image"),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    out = []
    for dataset in [*CLASSIFICATION, *SEGMENTATION]:
        table = sorted((r for r in rows if r["dataset"] == dataset), key=lambda r: -r["score"])
        if not table:
            continue
        front = pareto(table)
        metric = "test AUC" if dataset in CLASSIFICATION else "test mean Dice"
        unit = "image" if dataset in CLASSIFICATION else "case"
        out += [
            f"### {dataset}",
            "",
            f"| model | {metric} | ACC | params | epochs | train img/s | train min | ms/{unit} |",
        ]
        out.append("|---|---|---|---|---|---|---|---|")
        for r in table:
            ci = f" ({r['score_ci'][0]:.3f}-{r['score_ci'][1]:.3f})" if r.get("score_ci") else ""
            name = f"**{r['model']}** ★" if r["model"] in front else r["model"]
            acc = f"{r['acc']:.3f}" if r.get("acc") is not None else ""
            rate = f"{r['train_images_per_second']:.0f}" if r.get("train_images_per_second") else ""
            out.append(
                f"| {name} | {r['score']:.3f}{ci} | {acc} | {r['parameters'] / 1e6:.2f}M | {r['epochs']:.0f} | "
                f"{rate} | {r['train_minutes']:.1f} | {r['inference_ms_per_image']:.2f} |"
            )
        out += ["", "★ Pareto front: no other model is as accurate while both faster at inference and smaller.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("classification", "segmentation"), default=None)
    parser.add_argument("--datasets", default=",".join([*CLASSIFICATION, *SEGMENTATION]))
    parser.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs (default: the task's automatic)")
    parser.add_argument(
        "--minutes",
        default="1,2.5",
        help="training minutes per run (train.time_limit), classification,segmentation: 18 classifiers x 3 sets "
        "x 1 + 8 segmenters x 2 sets x 2.5 is about 2.5 hours with evaluation here (8,12: about 11 hours)",
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "zoo"))
    parser.add_argument("--update", action="store_true", help="keep (and skip) the runs already in --out")
    args = parser.parse_args(argv)
    minutes = dict(zip(("classification", "segmentation"), map(float, args.minutes.split(",") * 2), strict=False))
    import medattn.models  # noqa: F401
    from medattn.registry import MODELS

    wanted = set(args.models.split(",")) if args.models else None
    previous = Path(args.out).with_suffix(".json")
    runs = json.loads(previous.read_text())["runs"] if args.update and previous.is_file() else []
    done = {(r["dataset"], r["model"], r["seed"]) for r in runs}
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.datasets.split(","):
            kind = "classification" if dataset in CLASSIFICATION else "segmentation"
            if args.only not in (None, kind):
                continue
            for model in MODELS.names(kind):
                if wanted is not None and model not in wanted:
                    continue
                for seed in map(int, args.seeds.split(",")):
                    if (dataset, model, seed) in done:
                        continue
                    step = classify if kind == "classification" else segment
                    try:
                        row = step(dataset, model, seed, epochs=args.epochs, minutes=minutes[kind], work=Path(work))
                    except Exception as error:  # noqa: BLE001  one model's failure is a row, not the end of the night
                        row = {
                            "dataset": dataset,
                            "model": model,
                            "seed": seed,
                            "error": f"{type(error).__name__}: {error}",
                        }
                    runs.append(row)
                    print(json.dumps(row), file=sys.stderr)
                    write(args.out, runs)
    write(args.out, runs)  # also when every run was there already: the tables in today's format
    return 0


def write(out: str, runs: list[dict]) -> None:
    good = [r for r in runs if "error" not in r]
    seeds = sorted({r["seed"] for r in good})
    note = f"One seed ({seeds[0]}) per run. " if len(seeds) == 1 else f"Seeds {seeds}, means shown. "
    text = (
        note
        + "Every run had the same training budget (train --time-limit); see README.\n\n"
        + markdown(summarise(good))
    )
    write_results(out, {"runs": runs, "summary": summarise(good)}, text)


if __name__ == "__main__":
    raise SystemExit(main())
