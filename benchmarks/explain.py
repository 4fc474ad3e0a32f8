"""Are the explanations right? Faithfulness and localisation of every method against a random map, on real data.

- BreastMNIST, PneumoniaMNIST (2D, the default model, shortened training): deletion / insertion areas (blur
  removal) per method, beside a random map of the same shape, over the first N test images.
- lgg_mri (2D, three MR sequences as channels, split by patient): a classifier of "tumour on this slice",
  trained at 64 x 64, scored on the test patients' tumour slices against the FLAIR masks (energy inside the
  mask, max-hit rate) and for faithfulness.
- AdrenalMNIST3D (3D, the default 3D model with SE attention): faithfulness per method.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explain.py [--datasets a,b] [--n 50] [--work runs/explain]

Writes results/explain.json and results/explain.md. Runs in --work are kept (and reused when present).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_results  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
METHODS = ["attention", "gradcam", "gradcam++", "hirescam", "occlusion", "integrated_gradients"]
DATASETS = {
    # name: (data, epochs, size, model options, only cases with masks); lgg_mri explains the class "tumour" (the
    # class whose evidence lies in the mask), whatever the slice's prediction
    "breastmnist": (SHARED / "medmnist" / "breastmnist.npz", 20, None, None, False),
    "pneumoniamnist": (SHARED / "medmnist" / "pneumoniamnist.npz", 3, None, None, False),
    "lgg_mri": (None, 6, [64, 64], {"widths": [16, 32, 64], "depths": [1, 1, 1], "attention": "cbam"}, True),
    "adrenalmnist3d": (SHARED / "medmnist" / "adrenalmnist3d.npz", 8, None, None, False),
}


def lgg_manifest(work: Path) -> Path:
    """path,label,patient_id,mask for every lgg_mri slice: `tumour` where the FLAIR mask is not empty."""
    root = SHARED / "lgg_mri"
    out = work / "lgg_tumour_slices.csv"
    work.mkdir(parents=True, exist_ok=True)
    with (root / "manifest.csv").open() as handle, out.open("w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["path", "label", "patient_id", "mask"])
        for row in csv.DictReader(handle):
            tumour = int(row["mask_pixels"]) > 0
            mask = str(root / "masks" / row["file"]) if tumour else ""
            writer.writerow(
                [str(root / "images" / row["file"]), "tumour" if tumour else "none", row["patient_id"], mask]
            )
    return out


def train(name: str, data: Path, work: Path, *, epochs: int, size, options) -> tuple[Path, float | None]:
    from medattn.config import RunConfig
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    run = work / name
    if (run / "model.safetensors").is_file():
        return run, None  # reused: its training time is the earlier result's
    config = RunConfig()
    config.data.path, config.data.size = str(data), size
    if options:
        config.model.name, config.model.options = "attn_resnet", options
    config.train.epochs, config.train.threads, config.train.seed = epochs, 1, 0
    start = time.time()
    fit(config, prepare_run_dir(run, resume=False, force=True))
    return run, time.time() - start


def score(run: Path, *, n: int, masked_only: bool, removal: str, target: str | None = None) -> dict:
    from itertools import islice

    from medattn.engine.loaded import load_run
    from medattn.explain.explainer import Explainer
    from medattn.explain.scores import score_cases
    from medattn.tasks import task_for_run

    loaded = load_run(run)
    cases = task_for_run(run).explain_cases(run, data=None, split="test")
    if masked_only:
        cases = (c for c in cases if c.mask is not None and c.mask.any())
    explainer = Explainer(loaded, METHODS, target=target)
    start = time.time()
    result = score_cases(explainer, islice(cases, n), removal=removal, steps=10, seed=0)
    evaluated = json.loads((run / "model.json").read_text()).get("metrics", {}).get("val", {})
    return {**result, "seconds": time.time() - start, "val_auc": evaluated.get("auc")}


def verdict(row: dict, key: str, higher: bool) -> str:
    """The value and CI, and whether its paired difference from the random map has a CI clear of 0."""
    value, ci = row.get(key), row.get(f"{key}_ci")
    if value is None:
        return ""
    text = f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    low, high = row.get(f"{key}_minus_random_ci") or [0.0, 0.0]
    if (low > 0) if higher else (high < 0):
        return f"**{text}**"
    if (high < 0) if higher else (low > 0):
        return f"{text} (worse than random)"
    return f"{text} (not better than random)"


def markdown(results: dict) -> str:
    lines = [
        "| Data | n | method | deletion AUC ↓ | insertion AUC ↑ | energy inside mask ↑ | max-hit rate ↑ |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for method, row in result["methods"].items():
            cells = [
                verdict(row, "deletion_auc", higher=False) if method != "random" else _plain(row, "deletion_auc"),
                verdict(row, "insertion_auc", higher=True) if method != "random" else _plain(row, "insertion_auc"),
                verdict(row, "energy_inside", higher=True) if method != "random" else _plain(row, "energy_inside"),
                verdict(row, "max_hit_rate", higher=True) if method != "random" else _plain(row, "max_hit_rate"),
            ]
            label = f"{name} (mask covers {result['mask_fraction']:.3f})" if "mask_fraction" in result else name
            lines.append(f"| {label} | {result['n']} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plain(row: dict, key: str) -> str:
    ci = row.get(f"{key}_ci")
    return "" if key not in row else f"{row[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--n", type=int, default=50, help="test images (lgg_mri: tumour slices) scored per set")
    parser.add_argument("--removal", default="blur")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "explain")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "explain")
    parser.add_argument("--update", action="store_true", help="merge into an existing results file")
    args = parser.parse_args(argv)
    results = {}
    if args.update and args.out.with_suffix(".json").is_file():
        results = json.loads(args.out.with_suffix(".json").read_text())["results"]
    for name in args.datasets.split(","):
        data, epochs, size, options, masked = DATASETS[name]
        data = data or lgg_manifest(args.work)
        run, seconds = train(name, data, args.work, epochs=epochs, size=size, options=options)
        target = "tumour" if masked else None
        result = score(run, n=args.n, masked_only=masked, removal=args.removal, target=target)
        if seconds is None:
            seconds = results.get(name, {}).get("train_seconds")
        results[name] = {**result, "train_seconds": seconds, "epochs": epochs, "target": target or "the prediction"}
        print(f"{name}: scored {result['n']} in {result['seconds']:.0f} s", flush=True)
        write_results(args.out, {"methods": METHODS, "results": results}, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
