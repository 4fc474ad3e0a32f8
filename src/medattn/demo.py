"""`medattn demo`: phantom data -> train an attention model -> evaluate -> metrics and where the run is.

The phantom is written in the MedMNIST .npz layout, so the demo exercises the same path as real data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medattn.errors import RunDirError


def run_demo(out: Path, *, force: bool, verbose: bool = True) -> dict:
    from medattn.config import RunConfig
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
    say(f"[bold]1/3[/] writing 2D phantom images (lesion present / absent) to {data}")
    save_medmnist_npz(data, n_train=800, n_val=200, n_test=400, spatial_dims=2, size=32, num_classes=2, seed=0)
    config = RunConfig()
    config.data.path = str(data)
    config.model.name = "attn_resnet"
    config.train.epochs = 30
    config.train.seed = 0
    run = prepare_run_dir(out / "classification", resume=False, force=False)
    say(
        f"[bold]2/3[/] training {config.model.name} (squeeze-and-excitation attention) for {config.train.epochs} epochs"
    )
    result = fit(config, run)
    say("[bold]3/3[/] evaluating on the held-out test split")
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
        "outputs": str(out.resolve()),
    }
    if verbose:
        print(f"\nDemo outputs are in {out.resolve()}:")
        print(f"  {run}/: model.safetensors, model.json, config.yaml, history.csv, metrics.json")
    return summary
