"""`medattn demo`: for every task that has a demo, phantom data -> train -> evaluate -> predict.

Each task writes its own phantom data in a layout real data comes in (a MedMNIST .npz, PNG images with masks,
...), so the demo runs the same paths as real data through the one engine. It ends by printing where the runs are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medattn.errors import RunDirError

HEADLINE = (
    "auc",
    "acc",
    "dice_mean",
    "dice_per_class",
    "mae",
    "r2",
)  # the numbers the demo summary keeps, where a task has them


def run_demo(out: Path, *, force: bool, verbose: bool = True) -> dict:
    from medattn.engine.trainer import fit
    from medattn.progress import console
    from medattn.runs import prepare_run_dir
    from medattn.tasks import all_tasks

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunDirError(f"demo folder {out} already exists; pass --force to replace it")
        shutil.rmtree(out)
    say = console().print
    summary: dict = {}
    tasks = [task for task in all_tasks() if task.has_demo]
    for number, task in enumerate(tasks, start=1):
        step = f"[bold]{number}/{len(tasks)} {task.name}[/]"
        config = task.demo(out, say=lambda text, step=step: say(f"{step}: {text}"))
        config.train.seed = 0
        run = prepare_run_dir(out / task.name, resume=False, force=False)
        say(f"{step}: training {config.model.name} for {config.train.epochs} epochs")
        result = fit(config, run)
        say(f"{step}: evaluating on the held-out test split")
        metrics = task.evaluate(run, data=None, split="test", tta=False)
        if verbose:
            task.print_report(metrics)
        entry = {"run": str(run), "best_epoch": result["best_epoch"], "n": metrics["n"]}
        entry.update({k: metrics[k] for k in HEADLINE if k in metrics})
        files = task.demo_files(config)
        if files:
            predicted = task.predict(run, files, tta=False, out_dir=run / "predictions", overwrite=False, series=None)
            entry["prediction"] = predicted["predictions"][0]
        summary[task.name] = entry
    summary["outputs"] = str(out.resolve())
    if verbose:
        print(f"\nDemo outputs are in {out.resolve()}:")
        for task in tasks:
            entry = summary[task.name]
            print(f"  {entry['run']}/: model.safetensors, model.json, config.yaml, history.csv, metrics.json")
            if "prediction" in entry:
                shown = entry["prediction"].get("mask") or entry["prediction"].get("file")
                print(f"    a prediction: {shown}")
    return summary
