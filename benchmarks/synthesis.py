"""Synthesis benchmark on BreastMNIST: does mixing DDPM samples into the training split raise the default
classifier's test AUC? Plus the samples' fidelity (FID in a real-data classifier's features) and privacy (distance
to the nearest training image).

    .venv/bin/python benchmarks/synthesis.py                    # DDPM, 546 samples, 3 seeds x 2 classifiers
    .venv/bin/python benchmarks/synthesis.py --seeds 0 --ddpm-epochs 60

Steps, each kept in --work and reused when the script is run again (a killed training resumes from its
checkpoint): train the DDPM with the synthesis defaults on the official train split; generate --ratio x 546
images in the training class proportions (an .npz in MedMNIST's layout); for each seed train the default
classifier on the real images alone and on real + synthetic (`--synthetic`, the same seed, epochs sized by the
task's rule from the images it sees, so both see about the same number of images); score the official test
split. FID uses the first seed's real-only classifier's features, and is measured right after that seed's pair.
Writes results/synthesis.json and results/synthesis.md after every step, so an interrupted run still reports
what finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"


def _cached(path: Path, make) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    result = make()
    path.write_text(json.dumps(result, indent=2))
    return result


def train(config, run: Path) -> float:
    """Train (or resume, or reuse) a run; the minutes this call trained."""
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    if (run / "model.json").is_file():
        return 0.0
    resumed = (run / "checkpoint" / "last.pt").is_file()
    started = time.perf_counter()
    fit(config, run if resumed else prepare_run_dir(run, resume=False, force=True), resume=resumed, quiet=True)
    return round((time.perf_counter() - started) / 60, 2)


def classifier(seed: int, work: Path, synthetic: Path | None, ratio: float) -> dict:
    from medattn.config import RunConfig
    from medattn.tasks.classify.report import evaluate_run

    config = RunConfig()
    config.data.path = str(DATA)
    config.train.seed = seed
    if synthetic is not None:
        config.data.synthetic, config.data.synthetic_ratio = str(synthetic), ratio
    run = work / f"{'mixed' if synthetic else 'real'}-seed{seed}"
    minutes = train(config, run)
    test = evaluate_run(run, split="test")
    card = json.loads((run / "model.json").read_text())
    return {
        "seed": seed,
        "auc": test["auc"],
        "acc": test["acc"],
        "auc_ci": test["auc_ci"],
        "epochs": card["training"]["epochs_run"],
        "best_epoch": card["training"]["best_epoch"],
        "train_images": card["training_data"]["splits"]["train"]
        + ((card["training_data"].get("synthetic") or {}).get("images", 0)),
        "train_minutes": minutes,
    }


def markdown(payload: dict) -> str:
    lines = ["## Synthesis: DDPM samples mixed into BreastMNIST's training split", ""]
    ddpm = payload.get("ddpm")
    if ddpm:
        lines.append(
            f"DDPM (`ddpm_unet` {ddpm['options']}, {ddpm['parameters']:,} parameters): {ddpm['epochs']} epochs, "
            f"val v-prediction MSE {ddpm['val_loss']:.4f}; {payload['generation']['images']} samples in "
            f"{payload['generation']['seconds']:.0f} s ({payload['generation']['steps']} DDIM steps, guidance "
            f"{payload['generation']['guidance']})."
        )
        lines.append("")
    pairs = payload.get("pairs", [])
    if pairs:
        lines += ["| seed | test AUC, real only | test AUC, real + synthetic | difference |", "|---|---:|---:|---:|"]
        for p in pairs:
            lines.append(f"| {p['seed']} | {p['real']['auc']:.3f} | {p['mixed']['auc']:.3f} | {p['difference']:+.3f} |")
        if len(pairs) > 1:
            real = [p["real"]["auc"] for p in pairs]
            mixed = [p["mixed"]["auc"] for p in pairs]
            diffs = [p["difference"] for p in pairs]
            lines.append(
                f"| mean ± sd | {statistics.fmean(real):.3f} ± {statistics.pstdev(real):.3f} | "
                f"{statistics.fmean(mixed):.3f} ± {statistics.pstdev(mixed):.3f} | "
                f"{statistics.fmean(diffs):+.3f} ({sum(d > 0 for d in diffs)}/{len(diffs)} seeds up) |"
            )
        lines.append("")
    fidelity = payload.get("fidelity")
    if fidelity and fidelity.get("fid"):
        fid, near = fidelity["fid"], fidelity["nearest"]
        per_class = ", ".join(f"{k} {v:.2f}" for k, v in fid["per_class"].items())
        lines += [
            "| FID (test split, seed-0 classifier's features) | value |",
            "|---|---:|",
            f"| samples vs real | {fid['samples_vs_real']:.2f} ({per_class}) |",
            f"| train vs real (floor) | {fid['train_vs_real']:.2f} |",
            f"| noise vs real (ceiling) | {fid['noise_vs_real']:.2f} |",
            "",
            f"Nearest training image (RMS per pixel, standardised): samples median {near['samples']['median']:.3f} "
            f"(min {near['samples']['min']:.3f}); real test images median {near['held_out']['median']:.3f} "
            f"(min {near['held_out']['min']:.3f}); {near['closer_than_any_held_out']} of {near['samples']['n']} "
            "samples closer to a training image than any test image is.",
            "",
        ]
    for note in payload.get("missing", []):
        lines.append(f"- not run: {note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ratio", type=float, default=1.0, help="synthetic images per real training image")
    parser.add_argument("--ddpm-epochs", type=int, default=0, help="0: the synthesis task's automatic epochs")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-synthesis"))
    parser.add_argument("--out", default=str(ROOT / "results" / "synthesis"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from medattn.config import RunConfig
    from medattn.tasks.synthesis.generate import generate_images
    from medattn.tasks.synthesis.report import evaluate_run as evaluate_generator

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    payload: dict = {"data": str(DATA), "seeds": seeds, "ratio": args.ratio, "missing": []}

    def report() -> None:
        write_results(args.out, payload, markdown(payload))

    config = RunConfig(task="synthesis")
    config.data.path, config.train.epochs = str(DATA), args.ddpm_epochs
    minutes = train(config, work / "ddpm")
    card = json.loads((work / "ddpm" / "model.json").read_text())
    payload["ddpm"] = {
        "options": card["model"]["options"],
        "parameters": card["model"]["parameters"],
        "epochs": card["training"]["epochs_run"],
        "val_loss": card["metrics"]["val"]["loss"],
        "train_minutes": minutes or card["training"]["seconds"] / 60,
    }
    synthetic = work / "synthetic.npz"
    n = round(args.ratio * 546)
    payload["generation"] = _cached(
        work / "generation.json",
        lambda: generate_images(
            work / "ddpm", n=n, label=None, out=synthetic, seed=0, steps=None, guidance=None, overwrite=True
        ),
    )
    report()
    payload["pairs"] = []
    for seed in seeds:
        real = _cached(work / f"real-seed{seed}.json", lambda s=seed: classifier(s, work, None, args.ratio))
        mixed = _cached(work / f"mixed-seed{seed}.json", lambda s=seed: classifier(s, work, synthetic, args.ratio))
        payload["pairs"].append({"seed": seed, "real": real, "mixed": mixed, "difference": mixed["auc"] - real["auc"]})
        report()
        if seed == seeds[0]:  # fidelity needs only the first real-only classifier: measured before the other seeds
            features = str(work / f"real-seed{seed}")
            payload["fidelity"] = _cached(
                work / "fidelity.json",
                lambda f=features: evaluate_generator(work / "ddpm", data=None, split="test", features=f),
            )
            report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
