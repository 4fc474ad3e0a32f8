"""MedMNIST v2 benchmark: medattn's default classifier on the official splits, beside the published table
and beside the MedMNIST ResNet-18 (28) recipe timed in the same run.

    .venv/bin/python benchmarks/medmnist.py                      # 3 datasets x 3 seeds (about 40 min)
    .venv/bin/python benchmarks/medmnist.py --datasets breastmnist --seeds 0
    .venv/bin/python benchmarks/medmnist.py --datasets pneumoniamnist --update   # keep the others' rows

Writes results/medmnist.json and results/medmnist.md. Accuracy: mean (and spread) over seeds of test AUC/ACC,
the epoch chosen on validation by the default rule (loss). Speed: training images per second of our loop
(augmentation included) divided by the ResNet-18 (28) recipe's (3x3 stride-1 stem, no max-pool, Adam 1e-3,
batch 128) on the same data.
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
DATA = ROOT.parent / "shared" / "data" / "medmnist"

# Published MedMNIST v2 test AUC / ACC (Yang et al., Scientific Data 2023; medmnist.com).
PUBLISHED = {
    "breastmnist": {
        "ResNet-18 (28)": (0.901, 0.863),
        "ResNet-50 (224)": (0.866, 0.842),
        "Google AutoML Vision": (0.919, 0.861),
    },
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.944, 0.854),
        "ResNet-50 (224)": (0.962, 0.884),
        "Google AutoML Vision": (0.991, 0.946),
    },
    "adrenalmnist3d": {
        "ResNet-18+3D": (0.827, 0.721),
        "ResNet-50+3D": (0.828, 0.745),
        "auto-sklearn": (0.828, 0.802),
    },
}


def baseline_rate(path: Path, *, steps: int, seed: int = 0) -> float:
    """Training images/s of the MedMNIST ResNet-18 (28) recipe (2D) or ResNet-18+3D (3D) on real images.

    2D uses the recipe's batch of 128. A 3D step at batch 128 takes minutes here, so 3D is timed at batch 8:
    per-image throughput of a convolutional network this size hardly depends on the batch on a CPU.
    """
    import torch

    from medattn.data.medmnist import read_medmnist
    from medattn.registry import create_model

    images, labels = read_medmnist(path, "train")
    batch = 128 if images.ndim == 4 else 8
    torch.manual_seed(seed)
    model = create_model(
        "resnet18", spatial_dims=images.ndim - 2, in_channels=images.shape[1], num_classes=2, options={"stem": "small"}
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = torch.from_numpy(images).float() / 255
    y_all = torch.from_numpy(labels[:, 0]).long()
    model.train()
    seen, started = 0, time.perf_counter()
    for step in range(steps + 1):
        if step == 1:  # the first step pays one-off allocation costs
            started, seen = time.perf_counter(), 0
        index = torch.randint(0, len(x_all), (batch,))
        loss = torch.nn.functional.cross_entropy(model(x_all[index]), y_all[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += batch
    return seen / (time.perf_counter() - started)


def run_one(
    path: Path, seed: int, *, epochs: int | None, model: str | None, work: Path, config_file: str | None = None
) -> dict:
    from medattn.config import RunConfig, load_config
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir
    from medattn.tasks.classify.report import evaluate_run

    config = load_config(config_file) if config_file else RunConfig()
    config.data.path = str(path)
    config.train.seed = seed
    if epochs:
        config.train.epochs = epochs
    if model:
        config.model.name = model
    run = prepare_run_dir(work / f"{path.stem}-seed{seed}", resume=False, force=True)
    started = time.perf_counter()
    result = fit(config, run)
    minutes = (time.perf_counter() - started) / 60
    test = evaluate_run(run, split="test")
    test_tta = evaluate_run(run, split="test", tta=True)
    card = json.loads((run / "model.json").read_text())
    return {
        "seed": seed,
        "auc": test["auc"],
        "acc": test["acc"],
        "auc_ci": test["auc_ci"],
        "auc_tta": test_tta["auc"],
        "acc_tta": test_tta["acc"],
        "val_auc": result["val"]["auc"],
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs_run"],
        "train_minutes": round(minutes, 2),
        "train_images_per_second": card["training"]["images_per_second"],
        "model": card["model"]["name"],
        "options": card["model"]["options"],
        "parameters": card["model"]["parameters"],
    }


def summarise(name: str, runs: list[dict], baseline: float) -> dict:
    mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
    spread = lambda key: statistics.pstdev(r[key] for r in runs) if len(runs) > 1 else 0.0  # noqa: E731
    rate = statistics.fmean(r["train_images_per_second"] for r in runs)
    return {
        "dataset": name,
        "runs": runs,
        "auc_mean": mean("auc"),
        "auc_std": spread("auc"),
        "acc_mean": mean("acc"),
        "acc_std": spread("acc"),
        "auc_tta_mean": mean("auc_tta"),
        "acc_tta_mean": mean("acc_tta"),
        "max_train_minutes": max(r["train_minutes"] for r in runs),
        "train_images_per_second": rate,
        "baseline_images_per_second": baseline,
        "speed_ratio": rate / baseline,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| Dataset | Method | test AUC | test ACC | train time | train images/s (ratio to ResNet-18 recipe) |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        model = res["runs"][0]["model"]
        lines.append(
            f"| {res['dataset']} | **medattn {model}** ({res['runs'][0]['parameters'] / 1e6:.2f}M params), "
            f"mean of {len(res['runs'])} seeds | **{res['auc_mean']:.3f}** ± {res['auc_std']:.3f} | "
            f"**{res['acc_mean']:.3f}** ± {res['acc_std']:.3f} | ≤ {res['max_train_minutes']:.1f} min | "
            f"{res['train_images_per_second']:.0f} ({res['speed_ratio']:.1f}x) |"
        )
        lines.append(
            f"| | ResNet-18 recipe timed in the same run | | | | {res['baseline_images_per_second']:.1f} (1.0x) |"
        )
        for method, (auc, acc) in PUBLISHED[res["dataset"]].items():
            lines.append(f"| | {method} (published) | {auc:.3f} | {acc:.3f} | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="breastmnist,pneumoniamnist,adrenalmnist3d")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--model", default=None, help="override the default model")
    parser.add_argument("--config", default=None, help="a run config (YAML) to train with instead of the defaults")
    parser.add_argument("--baseline-steps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "medmnist"))
    parser.add_argument("--update", action="store_true", help="keep the other datasets' results already in --out")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no MedMNIST data at {DATA}", file=sys.stderr)
        return 1
    previous = Path(args.out).with_suffix(".json")
    kept = {r["dataset"]: r for r in json.loads(previous.read_text())} if args.update and previous.is_file() else {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.datasets.split(","):
            path = DATA / f"{name}.npz"
            baseline = baseline_rate(path, steps=args.baseline_steps)
            runs = [
                run_one(path, int(s), epochs=args.epochs, model=args.model, work=Path(work), config_file=args.config)
                for s in args.seeds.split(",")
            ]
            kept[name] = summarise(name, runs, baseline)
            print(json.dumps({k: v for k, v in kept[name].items() if k != "runs"}), file=sys.stderr)
            results = [kept[n] for n in PUBLISHED if n in kept]  # written after every dataset, in table order
            write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
