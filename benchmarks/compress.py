"""Compression benchmark on real data: what pruning, distillation and INT8 cost in accuracy, and what they give in
size and speed on this CPU, against the FP32 PyTorch network they come from, all measured in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compress.py                       # BreastMNIST, about 6 min here
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compress.py --sets hippocampus --cases 30 --epochs 4 --rounds 1

(The hippocampus run trained its six networks in about 8 minutes here, but timing ten 3D variants at batch 64 in
five rounds ran past 20 minutes on the shared CPU and was stopped: use --rounds 1 there.)

For each set a teacher is trained (the task's default model, few epochs: a comparison between variants of one
network, not a best score; one seed, so the spread is the bootstrap CI of the test metric), then
`medattn compress` makes: pruned at 0.25, 0.5 and 0.75 of the inner channels (fine-tuned 3 epochs) and a
distilled student of half the widths (the teacher's epochs). Every variant is also exported to INT8
(ONNX Runtime static QDQ). Reported per variant: test AUC and ACC (or mean Dice) with 95% CIs, size on disk,
parameters, batch-1 latency and batch-64 throughput as ratios to FP32 PyTorch. Writes results/compress.json, .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_results
from deploy import SETS, cpu_name, speed

ROOT = Path(__file__).resolve().parents[1]
SHARES = (0.25, 0.5, 0.75)
STUDENTS = {  # the task's default model at half its widths (about a quarter of its parameters)
    "attn_resnet": {"widths": [16, 32, 64], "depths": [1, 1, 1]},
    "attention_unet": {"channels": [8, 16, 32, 64]},
}


def hippocampus_subset(work: Path, cases: int) -> Path:
    """The first `cases` MSD Hippocampus cases as a dataset.json of their own (the images linked, not copied)."""
    source = SETS["hippocampus"]
    meta = json.loads(source.read_text())
    folder = work / "hippocampus_subset"
    folder.mkdir()
    for name in ("imagesTr", "labelsTr"):
        (folder / name).symlink_to(source.parent / name)
    meta["training"], meta["numTraining"] = meta["training"][:cases], cases
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder / "dataset.json"


def scored(run: Path, backend: str) -> dict:
    from medattn.engine.loaded import reading
    from medattn.tasks import task_for_run

    with reading(run, backend=backend):
        metrics = task_for_run(run).evaluate(run, data=None, split="test", tta=False)
    keys = [k for k in ("auc", "acc", "dice_mean") if k in metrics]
    return {k: {"value": metrics[k], "ci": metrics.get(f"{k}_ci")} for k in keys}


def variant(run: Path, x, *, label: str, seconds: float) -> dict:
    from medattn.export.to_onnx import export_onnx

    record = export_onnx(run, quantize="int8")
    card = json.loads((run / "model.json").read_text())
    rows = {}
    for backend, suffix, size in (
        ("torch", "FP32", (run / "model.safetensors").stat().st_size / 1e6),
        ("onnx-int8", "INT8", record["int8"]["size_mb"]),
    ):
        rows[f"{label} {suffix}"] = {
            "metrics": scored(run, backend),
            "size_mb": round(size, 3),
            "parameters": card["model"]["parameters"],
            "make_minutes": round(seconds / 60, 2),
            "timing": (run, card, backend),
        }
    return rows


def timed(rows: dict, x, *, rounds: int = 5) -> None:
    """Latency and throughput of every variant, measured in turns (round-robin), the median of `rounds` turns:
    a slow spell of a shared CPU then slows every variant alike instead of the one measured at that moment."""
    seen: dict[str, list[dict]] = {label: [] for label in rows}
    for _ in range(rounds):
        for label, row in rows.items():
            seen[label].append(speed(*row["timing"], x))
    for label, row in rows.items():
        del row["timing"]
        for key in ("latency_ms", "throughput"):
            row[key] = statistics.median(turn[key] for turn in seen[label])


def one_set(name: str, *, epochs: int, work: Path, cases: int, rounds: int) -> dict:
    from medattn.config import RunConfig
    from medattn.engine.trainer import fit
    from medattn.export.compress import compress_run
    from medattn.export.samples import real_inputs
    from medattn.runs import prepare_run_dir

    config = RunConfig()
    config.data.path = str(hippocampus_subset(work, cases) if name == "hippocampus" else SETS[name])
    config.train.epochs, config.train.threads = epochs, 1
    teacher = prepare_run_dir(work / name, resume=False, force=True)
    started = time.perf_counter()
    fit(config, teacher)
    card = json.loads((teacher / "model.json").read_text())
    x = real_inputs(teacher, card, split="test", limit=16)
    rows = variant(teacher, x, label="teacher", seconds=time.perf_counter() - started)
    for share in SHARES:
        started = time.perf_counter()
        pruned = compress_run(teacher, work / f"{name}_prune{share}", prune=share, force=True)["run"]
        rows.update(variant(Path(pruned), x, label=f"pruned {share}", seconds=time.perf_counter() - started))
    started = time.perf_counter()
    student = compress_run(
        teacher,
        work / f"{name}_student",
        distill=True,
        student=card["model"]["name"],
        student_options=json.dumps(STUDENTS[card["model"]["name"]]),
        force=True,
    )["run"]
    rows.update(variant(Path(student), x, label="distilled student", seconds=time.perf_counter() - started))
    timed(rows, x, rounds=rounds)
    base = rows["teacher FP32"]
    headline = next(iter(base["metrics"]))
    for row in rows.values():
        row["speedup_batch1"] = round(base["latency_ms"] / row["latency_ms"], 3)
        row["speedup_batch64"] = round(row["throughput"] / base["throughput"], 3)
        row["size_ratio"] = round(row["size_mb"] / base["size_mb"], 3)
        change = row["metrics"][headline]["value"] - base["metrics"][headline]["value"]
        row["change_points"] = round(100 * change, 2)
    return {
        "set": name,
        "cases": cases if name == "hippocampus" else None,
        "model": card["model"]["name"],
        "headline": headline,
        "teacher_epochs": epochs,
        "prune_finetune_epochs": 3,
        "student_options": STUDENTS[card["model"]["name"]],
        "input": list(x.shape[1:]),
        "variants": rows,
    }


def _metric(entry: dict) -> str:
    value, ci = entry["value"], entry["ci"]
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def markdown(results: dict) -> str:
    lines = [
        f"Compression on this CPU ({results['cpu']}, 1 thread); ratios to the FP32 PyTorch teacher, same run; "
        "95% bootstrap CIs on the test split; one seed.\n"
    ]
    for entry in results["sets"]:
        names = list(next(iter(entry["variants"].values()))["metrics"])
        lines += [
            f"\n**{entry['set']}** ({entry['model']}, teacher {entry['teacher_epochs']} epochs, pruned variants "
            f"fine-tuned {entry['prune_finetune_epochs']} epochs, student {entry['student_options']})\n",
            f"| variant | {' | '.join(names)} | change pt | size MB | size ratio | parameters | speed-up b1 | "
            "speed-up b64 |",
            "|---" * (len(names) + 7) + "|",
        ]
        for label, row in entry["variants"].items():
            metrics = " | ".join(_metric(row["metrics"][k]) for k in names)
            lines.append(
                f"| {label} | {metrics} | {row['change_points']:+.2f} | {row['size_mb']:.3f} | {row['size_ratio']:.2f} "
                f"| {row['parameters']:,} | {row['speedup_batch1']:.2f}x | {row['speedup_batch64']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="breastmnist")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--cases", type=int, default=40, help="hippocampus: the first N cases")
    parser.add_argument("--rounds", type=int, default=5, help="timing turns per variant (3D: 1 is already long)")
    parser.add_argument("--out", default=str(ROOT / "results" / "compress"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as work:
        sets = [
            one_set(n, epochs=args.epochs, work=Path(work), cases=args.cases, rounds=args.rounds)
            for n in args.sets.split(",")
        ]
    results = {"cpu": cpu_name(), "threads": 1, "sets": sets}
    write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
