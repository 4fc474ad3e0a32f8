"""What each small-data tool adds over the plain recipe, on the official MedMNIST splits.

    .venv/bin/python benchmarks/tools.py                                  # Breast + Pneumonia, 3 seeds
    .venv/bin/python benchmarks/tools.py --datasets breastmnist --seeds 0 --folds 3
    .venv/bin/python benchmarks/tools.py --seeds 1,2 --work runs/tools --update   # add seeds, resumable

For every dataset and seed, all scored on the untouched test split:
- plain:      the default recipe (`medattn train --data X.npz`)
- +TTA:       the same run evaluated with test-time flips (`evaluate --tta`)
- imbalance:  class-weighted cross-entropy and a class-balanced sampler, threshold by Youden's J on validation
- ensemble:   K-fold cross-validation on train+val (`tune cv`), the K fold models averaged (`evaluate DIR`)
- transfer:   BreastMNIST fine-tuned from a PneumoniaMNIST plain run (`train --init`): the same seed's, or the
              first seed's when PneumoniaMNIST ran fewer seeds (--seeds-pneumonia)

Writes results/tools.json and results/tools.md (mean ± spread over seeds, and the gain over plain) after every
dataset and seed. With --update the new seeds join those already there (a seed measured again replaces its old
figures), under a file lock, so two processes (one per dataset) can share the file. With --work the runs are kept:
a finished run is reused and an unfinished one resumed, so a killed benchmark continues where it stopped, and a
BreastMNIST process finds the PneumoniaMNIST donors another process trained there.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist"

# Published MedMNIST v2 test AUC / ACC of Google AutoML Vision, the strongest row (Yang et al. 2023).
AUTOML = {"breastmnist": (0.919, 0.861), "pneumoniamnist": (0.991, 0.946)}
METHODS = ("plain", "+TTA", "imbalance", "ensemble", "transfer")


def _config(path: Path, seed: int, *, epochs: int, **train):
    """The default run config on `path`; epochs 0 keeps the automatic choice."""
    from medattn.config import RunConfig

    config = RunConfig()
    config.train.epochs = epochs
    config.data.path = str(path)
    config.train.seed = seed
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


TIMING = "bench-minutes.json"  # written into a run once it finished: how long its training took


def _train(config, run: Path) -> tuple[Path, float]:
    """Train `config` into `run`, or reuse it when a previous invocation finished it (resume a killed one)."""
    from medattn.engine.trainer import fit
    from medattn.runs import CHECKPOINT, prepare_run_dir

    if (run / TIMING).is_file():
        return run, json.loads((run / TIMING).read_text())["minutes"]
    resume = (run / CHECKPOINT).is_file()
    run = prepare_run_dir(run, resume=resume, force=not resume)
    started = time.perf_counter()
    fit(config, run, resume=resume, quiet=True)
    minutes = (time.perf_counter() - started) / 60
    (run / TIMING).write_text(json.dumps({"minutes": minutes}))
    return run, minutes


def _score(run: Path, *, tta: bool = False) -> dict:
    from medattn.tasks.classify.report import evaluate_run

    test = evaluate_run(run, split="test", tta=tta)
    return {"auc": test["auc"], "acc": test["acc"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="pneumoniamnist,breastmnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seeds-pneumonia", default=None, help="seeds for PneumoniaMNIST (default: --seeds)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=0, help="override the automatic epochs (quick checks)")
    parser.add_argument("--out", default=str(ROOT / "results" / "tools"))
    parser.add_argument("--update", action="store_true", help="merge with the seeds already in --out")
    parser.add_argument("--work", default=None, help="keep the runs here (reused and resumed); default: a temp dir")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no MedMNIST data at {DATA}", file=sys.stderr)
        return 1
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    pneumonia_seeds = [int(s) for s in (args.seeds_pneumonia or args.seeds).split(",")]
    rows: dict[str, dict[str, list[dict]]] = {}
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for name in args.datasets.split(","):
            path = DATA / f"{name}.npz"
            for seed in pneumonia_seeds if name == "pneumoniamnist" else seeds:
                found = measure(name, path, seed, methods=methods, folds=args.folds, epochs=args.epochs, work=work)
                for method, value in found.items():
                    rows.setdefault(name, {}).setdefault(method, []).append({**value, "seed": seed})
                print(json.dumps({"dataset": name, "seed": seed, **found}), file=sys.stderr)
                record(Path(args.out), rows, folds=args.folds, update=args.update)
    return 0


def record(out: Path, rows: dict[str, dict[str, list[dict]]], *, folds: int, update: bool) -> None:
    """Write the summary of `rows`, merged (with --update) into what --out holds, under a lock on --out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged: dict[str, dict[str, dict[int, dict]]] = {}
        previous = out.with_suffix(".json")
        if update and previous.is_file():
            for name, by_method in json.loads(previous.read_text())["datasets"].items():
                for method, res in by_method.items():
                    merged.setdefault(name, {})[method] = {r["seed"]: r for r in res["runs"]}
        for name, by_method in rows.items():
            for method, runs in by_method.items():
                merged.setdefault(name, {}).setdefault(method, {}).update({r["seed"]: r for r in runs})
        ordered = {
            name: {m: [by_seed[s] for s in sorted(by_seed)] for m, by_seed in by_method.items() if by_seed}
            for name, by_method in merged.items()
        }
        results = summarise(ordered)
        seeds = sorted({r["seed"] for by_method in ordered.values() for runs in by_method.values() for r in runs})
        write_results(out, {"seeds": seeds, "folds": folds, **results}, markdown(results, folds=folds))


def measure(name: str, path: Path, seed: int, *, methods: list[str], folds: int, epochs: int, work: Path) -> dict:
    """Every requested method on one dataset and seed: test AUC/ACC and training minutes."""
    found = {}
    plain, minutes = _train(_config(path, seed, epochs=epochs), work / f"{name}-plain-{seed}")
    if "plain" in methods:
        found["plain"] = {**_score(plain), "minutes": minutes}
    if "+TTA" in methods:
        found["+TTA"] = {**_score(plain, tta=True), "minutes": minutes}
    if "imbalance" in methods:
        config = _config(path, seed, epochs=epochs, loss="weighted_ce", sampler="balanced", threshold="youden")
        run, minutes = _train(config, work / f"{name}-imbalance-{seed}")
        found["imbalance"] = {**_score(run), "minutes": minutes}
    if "ensemble" in methods:
        from medattn.tune.cv import PLAN_FILE, CVSettings, run_cv

        out = work / f"{name}-cv-{seed}"
        if (out / TIMING).is_file():
            cv_minutes = json.loads((out / TIMING).read_text())["minutes"]
        else:
            started = time.perf_counter()
            resume = (out / PLAN_FILE).is_file()
            config, settings = _config(path, seed, epochs=epochs), CVSettings(folds=folds)
            run_cv(config, out, settings=settings, resume=resume, force=not resume, quiet=True)
            cv_minutes = (time.perf_counter() - started) / 60
            (out / TIMING).write_text(json.dumps({"minutes": cv_minutes}))
        found["ensemble"] = {**_score(out), "minutes": cv_minutes}
    donors = sorted(work.glob(f"pneumoniamnist-plain-*/{TIMING}"))
    if "transfer" in methods and name == "breastmnist" and donors:
        donor = work / f"pneumoniamnist-plain-{seed}"  # the same seed's donor when it was run, else the first
        config = _config(path, seed, epochs=epochs)
        config.model.init = str(donor if (donor / TIMING).is_file() else donors[0].parent)
        run, minutes = _train(config, work / f"{name}-transfer-{seed}")
        found["transfer"] = {**_score(run), "minutes": minutes}
    return found


def summarise(rows: dict[str, dict[str, list[dict]]]) -> dict:
    def spread(values: list[float]) -> float:
        return statistics.pstdev(values) if len(values) > 1 else 0.0

    results = {}
    for name, by_method in rows.items():
        results[name] = {}
        for method, runs in by_method.items():
            if not runs:
                continue
            auc, acc = [r["auc"] for r in runs], [r["acc"] for r in runs]
            results[name][method] = {
                "auc_mean": statistics.fmean(auc),
                "auc_std": spread(auc),
                "acc_mean": statistics.fmean(acc),
                "acc_std": spread(acc),
                "max_minutes": max(r["minutes"] for r in runs),
                "runs": runs,
            }
    return {"datasets": results}


def markdown(results: dict, *, folds: int) -> str:
    lines = [
        "| Dataset | Method | seeds | test AUC | gain | test ACC | gain | train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "plain": "plain default recipe",
        "+TTA": "+ test-time flips",
        "imbalance": "weighted CE + balanced sampler + Youden threshold",
        "ensemble": f"{folds}-fold CV ensemble",
        "transfer": "fine-tuned from PneumoniaMNIST",
    }
    for name, by_method in results["datasets"].items():
        base = by_method.get("plain")
        for method, res in by_method.items():
            gain_auc = f"{res['auc_mean'] - base['auc_mean']:+.3f}" if base and method != "plain" else ""
            gain_acc = f"{res['acc_mean'] - base['acc_mean']:+.3f}" if base and method != "plain" else ""
            lines.append(
                f"| {name} | {labels[method]} | {len(res['runs'])} | "
                f"{res['auc_mean']:.3f} ± {res['auc_std']:.3f} | {gain_auc} | "
                f"{res['acc_mean']:.3f} ± {res['acc_std']:.3f} | {gain_acc} | ≤ {res['max_minutes']:.1f} min |"
            )
        auc, acc = AUTOML[name]
        lines.append(f"| {name} | Google AutoML Vision (published) | | {auc:.3f} | | {acc:.3f} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
