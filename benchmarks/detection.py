"""Detection benchmark: the two detectors, default recipe, on a crowded synthetic set and on real data.

    .venv/bin/python benchmarks/detection.py                                   # every set, both detectors
    .venv/bin/python benchmarks/detection.py --sets crowded --models detect_anchorfree --update

- crowded: the phantom generator's blood-smear set (tasks/detect/phantom.py), 300 colour pictures of 640 x 480
  holding about 200 touching and overlapping objects of three classes (10-40 px); a random 70/15/15 split. The
  default recipe (`medattn train --data boxes.csv`, nothing else given) must train within 20 minutes here.
- lgg: LGG brain MRI (FLAIR abnormality masks, 128 x 128 slices of 3 sequences), boxes from the masks
  (`medattn data boxes`), split by patient (70/15/15).
- hippocampus: MSD Task04, 3D boxes of both classes (anterior, posterior) from the masks, split by case.
Each run: `train` with the default recipe and only `--model` changed, then `evaluate` on the test split: mAP@0.5,
mAP@0.5:0.95 with 95% bootstrap intervals over images, AP50 per class, AR@100, FROC; training minutes (wall clock,
validation included) and inference seconds per image. Writes results/detection.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import timed_fit, write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("crowded", "lgg", "hippocampus")
MODELS = ("detect_anchorfree", "faster_rcnn")
CROWDED_IMAGES = 300
MIN_SIZE = 10  # pixels (voxels): the masks carry specks of a few pixels that no reader would box
NAMES = {"lgg": ["abnormality"], "hippocampus": None}


def data_for(name: str, work: Path) -> Path:
    """The set's box data under `work`, made once (the crowded pictures, or boxes from the shared masks)."""
    from medattn.tasks.detect.from_masks import write_mask_boxes
    from medattn.tasks.detect.phantom import save_crowded_set

    if name == "crowded":
        csv = work / "crowded" / "boxes.csv"
        return csv if csv.is_file() else save_crowded_set(work / "crowded", n=CROWDED_IMAGES, seed=0)
    out = work / f"{name}_boxes.csv"
    if not out.is_file():
        masks = DATA / "lgg_mri" if name == "lgg" else DATA / "msd_hippocampus" / "dataset.json"
        write_mask_boxes(masks, out, min_size=MIN_SIZE, class_names=NAMES[name])
    return out


def train_and_score(data: Path, model: str, run: Path, *, seed: int) -> dict:
    from medattn.config import RunConfig
    from medattn.tasks import get_task

    config = RunConfig(task="detection")
    config.data.path, config.model.name, config.train.seed = str(data), model, seed
    task = get_task("detection")
    timed = timed_fit(config, run, lambda r: task.evaluate(r, data=None, split="test", tta=False))
    card = json.loads((run / "model.json").read_text())
    test = json.loads((run / "metrics.json").read_text())["test"]
    minutes, seconds = timed["train_minutes"], timed["seconds_per_image"]
    keys = ("map50", "map", "map50_ci", "map_ci", "ap50_per_class", "ar100", "froc", "froc_ci", "n", "n_boxes")
    return {
        "model": model,
        "parameters": card["model"]["parameters"],
        "options": card["model"]["options"],
        "input": {k: card["input"].get(k) for k in ("patch", "size", "window")},
        "epochs": card["training"]["epochs_run"],
        "best_epoch": card["training"]["best_epoch"],
        "train_minutes": round(minutes, 2),
        "resumed_after_a_kill": timed.get("resumed", False),
        "seconds_per_image": round(seconds, 3),
        **{k: test[k] for k in keys if k in test},
    }


def _ci(result: dict, key: str) -> str:
    low, high = result.get(f"{key}_ci") or (float("nan"), float("nan"))
    return f"**{result[key]:.3f}** ({low:.3f}-{high:.3f})"


def markdown(results: dict) -> str:
    lines = [
        "| Set | Detector | mAP@0.5 (95% CI) | mAP@0.5:0.95 (95% CI) | AR@100 | FROC | params | epochs | "
        "train time | inference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        for result in runs.values():
            lines.append(
                f"| {name} ({result['n']} test images, {result['n_boxes']} boxes) | {result['model']} | "
                f"{_ci(result, 'map50')} | {_ci(result, 'map')} | {result['ar100']:.3f} | {result['froc']:.3f} | "
                f"{result['parameters'] / 1e6:.2f}M | {result['epochs']} | {result['train_minutes']:.1f} min | "
                f"{result['seconds_per_image']:.2f} s/image |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "detection"), help="data and runs (finished ones kept)")
    parser.add_argument("--out", default=str(ROOT / "results" / "detection"))
    parser.add_argument("--update", action="store_true", help="keep the other results already in --out")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    previous = Path(args.out).with_suffix(".json")
    results = json.loads(previous.read_text()) if args.update and previous.is_file() else {}
    work = Path(args.work)
    for name in args.sets.split(","):
        data = data_for(name, work)
        for model in args.models.split(","):
            result = train_and_score(data, model, work / f"{name}-{model}-{args.seed}", seed=args.seed)
            results.setdefault(name, {})[model] = result
            print(json.dumps({"set": name, **result}), file=sys.stderr)
            write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
