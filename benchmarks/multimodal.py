"""Multimodal benchmark on lgg_mri (T1, FLAIR, T1-Gd slices of 65 patients; split by patient, one seed).

    .venv/bin/python benchmarks/multimodal.py --quick     # 16 patients for segmentation, few epochs (about 30 min)
    .venv/bin/python benchmarks/multimodal.py             # every patient, 6 min per segmentation unit (about 2 h)
    .venv/bin/python benchmarks/multimodal.py --parts mil # one part; finished units are kept (resumable)

Segmentation of the FLAIR abnormality with each fusion (early, late, hemis, cross_attention), with and without
modality dropout, scored on every non-empty subset of the three sequences (`evaluate --missing all-subsets`):
Dice per patient (a patient's slices taken together) with its 95% bootstrap CI over the test patients; slices at
half resolution (2 mm pixels), each unit trained for `--minutes` (train --time-limit). The same recipe (early fusion,
modality dropout 0.3) trained on three institutions and tested on the fourth's patients (unseen site).
Multi-task: one `multitask_unet` with a segmentation head and a "tumour on this slice" head against the same model
with either head alone, same slices and budget.
Patient-level grade (II vs III, clinical.csv's neoplasm_histologic_grade) by attention MIL from the slices, with
and without age and sex, in 5-fold cross-validation by patient: the out-of-fold bag probabilities of all 65
patients pooled into one AUC with its bootstrap CI (65 patients give wide intervals). Each finished unit is written
to results/multimodal.json at once, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lgg_mri"
FUSIONS = ("early", "late", "hemis", "cross_attention")
SEQUENCES = "t1,flair,t1c"
CLINICAL = "age_at_initial_pathologic,gender"
FOLDS = 5
MULTITASK = {  # the same model and budget with one head, the other, or both
    "segmentation + tumour on slice": "segmentation,classification:foreground",
    "segmentation only": "segmentation",
    "tumour on slice only": "classification:foreground",
}
SITE = "HT"  # the test institution of the unseen-site unit (20 patients; the others train)


def medattn(*args) -> dict:
    """One `medattn ... --json` command in its own process on one thread; its JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "medattn", *map(str, args), "--json"], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"medattn {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def patients() -> list[dict]:
    return list(csv.DictReader((DATA / "manifest.csv").open()))


def segmentation_folder(work: Path, count: int | None) -> Path:
    """images/, masks/ and manifest.csv of the first `count` patients (all: None), linked to the real files."""
    rows = patients()
    chosen = sorted({r["patient_id"] for r in rows})[:count]
    rows = [r for r in rows if r["patient_id"] in chosen]
    folder = work / f"lgg-{len(chosen)}"
    if not (folder / "manifest.csv").is_file():
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            for r in rows:
                link = folder / sub / r["file"]
                if not link.exists():
                    link.symlink_to(DATA / sub / r["file"])
        lines = ["file,patient_id", *(f"{r['file']},{r['patient_id']}" for r in rows)]
        (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def segmentation_unit(data: Path, run: Path, *, fusion: str, dropout: float, budget: list) -> dict:
    """Train one fusion on half-resolution slices (2 mm pixels: 128 x 128), score every subset of sequences by the
    Dice per image (empty slices predicted empty count 1) and per patient (slices taken together)."""
    shutil.rmtree(run, ignore_errors=True)  # an unfinished unit starts again
    half = run.parent / "half-resolution.yaml"  # data.spacing has no flag of its own
    half.write_text("data:\n  spacing: [2.0, 2.0]\n")
    args = ["train", "--data", data, "--out", run, "--modalities", SEQUENCES, "--fusion", fusion, "--config", half]
    args += ["--modality-dropout", dropout]  # 0 said: without it, several modalities train with the default
    started = time.perf_counter()
    trained = medattn(*args, *budget)
    minutes = (time.perf_counter() - started) / 60
    scored = medattn("evaluate", run, "--missing", "all-subsets")
    subsets = scored["subsets"].items()
    return {
        "fusion": fusion,
        "modality_dropout": dropout,
        "epochs": trained["epochs_run"],
        "train_minutes": round(minutes, 1),
        "dice": {s: [m["dice_mean"], *m["dice_mean_ci"]] for s, m in subsets},
        "dice_patient": {s: [m["patients"]["dice_mean"], *m["patients"]["dice_mean_ci"]] for s, m in subsets},
        "n_test_images": next(iter(scored["subsets"].values()))["n"],
        "n_test_patients": next(iter(scored["subsets"].values()))["patients"]["n"],
    }


def multitask_unit(data: Path, run: Path, *, heads: str, budget: list) -> dict:
    """One `multitask_unet` with `heads` (segmentation, classification:foreground or both) on the same slices,
    budget and resolution: the multi-task run and the two single-task runs differ only in their heads."""
    shutil.rmtree(run, ignore_errors=True)
    half = run.parent / "half-resolution.yaml"
    half.write_text("data:\n  spacing: [2.0, 2.0]\n")
    started = time.perf_counter()
    medattn("train", "--data", data, "--out", run, "--heads", heads, "--config", half, *budget)
    minutes = (time.perf_counter() - started) / 60
    scored = medattn("evaluate", run)["heads"]
    row: dict = {"heads": heads, "train_minutes": round(minutes, 1)}
    for section in scored.values():
        if section["kind"] == "segmentation":
            patients = section["patients"]
            row["dice"] = [patients["dice_mean"], *patients["dice_mean_ci"]]
        else:
            row["auc"] = [section["auc"], *section["auc_ci"]]
            row["acc"] = section["acc"]
    return row


def site_csv(work: Path, test_site: str) -> Path:
    """image,mask,patient_id,split: the patients of `test_site` are the test split, every eighth other patient
    validation, the rest training (the other institutions)."""
    rows = patients()
    others = sorted({r["patient_id"] for r in rows if r["institution"] != test_site})
    val = set(others[::8])
    lines = ["image,mask,patient_id,split"]
    for r in rows:
        p = r["patient_id"]
        split = "test" if r["institution"] == test_site else "val" if p in val else "train"
        lines.append(f"{DATA / 'images' / r['file']},{DATA / 'masks' / r['file']},{p},{split}")
    path = work / f"site-{test_site}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def grade_folds(work: Path, *, every: int, seed: int) -> list[Path]:
    """One CSV per fold: the slices (every `every`-th) of each patient labelled with its grade; the fold's
    patients are test, an eighth of the others validation (stratified by grade in both)."""
    grades = {r["patient_id"]: r["neoplasm_histologic_grade"] for r in csv.DictReader((DATA / "clinical.csv").open())}
    rows = [r for r in patients() if int(r["slice_number"]) % every == 0]
    rng = np.random.default_rng(seed)
    by_grade = {g: rng.permutation(sorted(p for p in grades if grades[p] == g)).tolist() for g in set(grades.values())}
    fold_of = {p: i % FOLDS for members in by_grade.values() for i, p in enumerate(members)}
    paths = []
    for k in range(FOLDS):
        val = {p for members in by_grade.values() for p in [m for m in members if fold_of[m] != k][::8]}
        lines = ["path,label,patient_id,split"]
        for r in rows:
            p = r["patient_id"]
            split = "test" if fold_of[p] == k else "val" if p in val else "train"
            lines.append(f"{DATA / 'images' / r['file']},{grades[p]},{p},{split}")
        path = work / f"grade-fold{k}.csv"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def mil_unit(fold: Path, run: Path, *, clinical: bool, budget: list, size: int) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    args = ["train", "--data", fold, "--bag", "patient_id", "--out", run, "--size", size, *budget]
    if clinical:
        args += ["--clinical", DATA / "clinical.csv", "--clinical-columns", CLINICAL]
    medattn(*args)
    scored = medattn("evaluate", run, "--split", "test")
    return {
        "bags": [{"bag": b["bag"], "label": b["label"], "p_grade_iii": b["probabilities"]["2"]} for b in scored["bags"]]
    }


def pooled(units: list[dict]) -> dict:
    """AUC, accuracy and balanced accuracy of the pooled out-of-fold bag probabilities, with bootstrap CIs."""
    sys.path.insert(0, str(ROOT / "src"))
    from medattn.tasks.classify.metrics import classification_metrics

    bags = [b for unit in units for b in unit["bags"]]
    truth = np.asarray([int(b["label"] == "2") for b in bags])
    p = np.asarray([b["p_grade_iii"] for b in bags])
    metrics = classification_metrics(truth, np.stack([1 - p, p], axis=1), task="binary", threshold=0.5)
    return {k: metrics[k] for k in ("n", "auc", "auc_ci", "acc", "acc_ci", "balanced_acc")}


def markdown(results: dict) -> str:
    lines = ["# Multimodal benchmark (lgg_mri, split by patient, seed 0)", ""]
    seg = results.get("segmentation", {})
    if seg:
        lines += ["## FLAIR-abnormality segmentation: test Dice per patient (95% CI) by the sequences present", ""]
        lines += seg_table(seg.values(), "fusion")
        lines += [
            "Dice per patient: each test patient's slices taken together (overlap and volumes summed), the mean over",
            "patients with a bootstrap CI over patients. The per-image mean (an empty slice predicted empty scores 1)",
            "is in results/multimodal.json as `dice`.",
            "",
        ]
    site = [u for k, u in results.get("units", {}).items() if k.startswith("site-")]
    if site:
        lines += [f"## Unseen institution: trained on the others, tested on the {site[0]['test_site']} patients", ""]
        lines += seg_table(site, "fusion")
    multitask = results.get("multitask", {})
    if multitask:
        lines += ["## Multi-task: segmentation + tumour on this slice, against the single-task models", ""]
        lines += ["| model | Dice per patient | slice AUC | slice accuracy | train min |", "|---|---:|---:|---:|---:|"]
        for name, row in multitask.items():
            dice = f"{row['dice'][0]:.3f} ({row['dice'][1]:.2f}-{row['dice'][2]:.2f})" if row.get("dice") else "-"
            auc = f"{row['auc'][0]:.3f} ({row['auc'][1]:.2f}-{row['auc'][2]:.2f})" if row.get("auc") else "-"
            acc = f"{row['acc']:.3f}" if row.get("acc") is not None else "-"
            lines.append(f"| {name} | {dice} | {auc} | {acc} | {row['train_minutes']:.1f} |")
        lines.append("")
    mil = results.get("mil", {})
    if mil:
        lines += ["## Grade II vs III by attention MIL, 5-fold CV by patient (pooled out-of-fold, 95% CI)", ""]
        lines += ["| inputs | patients | AUC | accuracy at 0.5 | balanced accuracy |", "|---|---:|---:|---:|---:|"]
        for name, row in mil.items():
            cell = lambda k, r=row: f"{r[k]:.3f} ({r[k + '_ci'][0]:.2f}-{r[k + '_ci'][1]:.2f})"  # noqa: E731
            lines.append(f"| {name} | {row['n']} | {cell('auc')} | {cell('acc')} | {row['balanced_acc']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def seg_table(units, label: str) -> list[str]:
    """One row per unit: its Dice per patient (95% CI) on every subset of the sequences."""
    units = list(units)
    subsets = list(units[0]["dice_patient"])
    lines = [f"| {label} | dropout | epochs | train min | " + " | ".join(subsets) + " |"]
    lines.append("|---|---:|---:|---:|" + "---:|" * len(subsets))
    for unit in units:
        cells = [f"{d:.3f} ({lo:.2f}-{hi:.2f})" for d, lo, hi in unit["dice_patient"].values()]
        lines.append(
            f"| {unit[label]} | {unit['modality_dropout']} | {unit['epochs']} | {unit['train_minutes']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 patients for segmentation and short training")
    parser.add_argument("--parts", default="segmentation,site,multitask,mil")
    parser.add_argument("--minutes", type=float, default=6.0, help="training minutes per segmentation unit (full run)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "multimodal-bench"))
    parser.add_argument("--out", default=str(ROOT / "results" / "multimodal"))
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    results = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    if results.get("quick", args.quick) != args.quick:
        results = {}  # a quick and a full run are not mixed
    results["quick"] = args.quick
    units = results.setdefault("units", {})

    def unit(key: str, make) -> dict:
        if key not in units:
            units[key] = make()
            write_results(out, results, markdown(summaries(results)))
            print(f"{key}: done", file=sys.stderr)
        return units[key]

    parts = args.parts.split(",")
    budget = ["--epochs", 3] if args.quick else ["--time-limit", args.minutes]
    mil_budget = ["--epochs", 15] if args.quick else ["--time-limit", args.minutes / 2]
    if "segmentation" in parts:
        folder = segmentation_folder(work, 16 if args.quick else None)
        for fusion in FUSIONS:
            for dropout in (0.0, 0.3):
                name = f"seg-{fusion}-{dropout}"
                unit(name, lambda n=name, f=fusion, d=dropout: segmentation_unit(
                    folder, work / n, fusion=f, dropout=d, budget=budget
                ))  # fmt: skip
    if "site" in parts:  # unseen patients of another institution, the default fusion with modality dropout
        unit(f"site-{SITE}", lambda: {**segmentation_unit(
            site_csv(work, SITE), work / f"site-{SITE}", fusion="early", dropout=0.3, budget=budget
        ), "test_site": SITE})  # fmt: skip
    if "multitask" in parts:
        folder = segmentation_folder(work, 16 if args.quick else None)
        for name, heads in MULTITASK.items():
            unit(f"multitask-{name}", lambda n=name, h=heads: multitask_unit(
                folder, work / ("multitask-" + h.replace(",", "+").replace(":", "-")), heads=h, budget=budget
            ))  # fmt: skip
    if "mil" in parts:
        folds = grade_folds(work, every=4 if args.quick else 2, seed=0)
        for clinical in (False, True):
            for k, fold in enumerate(folds):
                name = f"mil-{'clinical' if clinical else 'images'}-fold{k}"
                unit(name, lambda f=fold, n=name, c=clinical: mil_unit(
                    f, work / n, clinical=c, budget=mil_budget, size=64 if args.quick else 128
                ))  # fmt: skip
    write_results(out, summaries(results), markdown(summaries(results)))
    return 0


def summaries(results: dict) -> dict:
    units = results.get("units", {})
    seg = {k: v for k, v in units.items() if k.startswith("seg-")}
    multitask = {k.removeprefix("multitask-"): v for k, v in units.items() if k.startswith("multitask-")}
    mil = {}
    for inputs in ("images", "clinical"):
        folds = [units[f"mil-{inputs}-fold{k}"] for k in range(FOLDS) if f"mil-{inputs}-fold{k}" in units]
        if len(folds) == FOLDS:
            mil["slices" if inputs == "images" else "slices + age, sex"] = pooled(folds)
    return {"quick": results.get("quick"), "units": units, "segmentation": seg, "multitask": multitask, "mil": mil}


if __name__ == "__main__":
    raise SystemExit(main())
