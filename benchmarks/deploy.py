"""Deployment benchmark on real data: what ONNX Runtime and INT8 give on this CPU, against FP32 PyTorch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy.py                    # about 10 min here
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy.py --sets breastmnist --epochs 4

For each set a run is trained (default model, few epochs: the comparison is between variants of one network,
not a best score), exported (`medattn export RUN --format onnx --quantize int8`) and scored on its test split
through each backend. Size in MB; batch-1 latency and batch-64 throughput of the network on real inputs, one
thread, as ratios to FP32 PyTorch measured in the same run; the change in AUC (classification) or mean Dice
(segmentation). Writes results/deploy.json and .md.
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

import numpy as np

from common import write_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {
    "breastmnist": DATA / "medmnist" / "breastmnist.npz",
    "pneumoniamnist": DATA / "medmnist" / "pneumoniamnist.npz",
    "hippocampus": DATA / "msd_hippocampus" / "dataset.json",
}
VARIANTS = {"torch": "FP32 PyTorch", "onnx": "FP32 ONNX Runtime", "onnx-int8": "INT8 ONNX Runtime (QDQ)"}


def _timed(call, x: np.ndarray, *, repeats: int) -> float:
    """Median seconds of call(x) over `repeats` runs after one warm-up."""
    call(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def speed(run: Path, card: dict, backend: str, x: np.ndarray) -> dict:
    if backend == "torch":
        import torch

        from medattn.engine.loaded import load_run

        torch.set_num_threads(1)
        model = load_run(run).model

        def call(batch):
            with torch.inference_mode():
                return model(torch.from_numpy(batch))
    else:
        from medattn.engine.backend import MODEL_FILES, OnnxNet

        call = OnnxNet(run / MODEL_FILES[backend])
    batch64 = np.concatenate([x] * (64 // len(x) + 1))[:64]
    return {"latency_ms": 1000 * _timed(call, x[:1], repeats=30), "throughput": 64 / _timed(call, batch64, repeats=3)}


def one_set(name: str, *, epochs: int, work: Path) -> dict:
    from medattn.config import RunConfig
    from medattn.engine.loaded import reading
    from medattn.engine.trainer import fit
    from medattn.export.samples import real_inputs
    from medattn.export.to_onnx import export_onnx
    from medattn.runs import prepare_run_dir
    from medattn.tasks import task_for_run

    config = RunConfig()
    config.data.path = str(SETS[name])
    config.train.epochs, config.train.threads = epochs, 1
    run = prepare_run_dir(work / name, resume=False, force=True)
    started = time.perf_counter()
    fit(config, run)
    train_minutes = (time.perf_counter() - started) / 60
    record = export_onnx(run, quantize="int8")
    card = json.loads((run / "model.json").read_text())
    task = task_for_run(run)
    x = real_inputs(run, card, split="test", limit=16)
    sizes = {
        "torch": (run / "model.safetensors").stat().st_size / 1e6,
        "onnx": record["size_mb"],
        "onnx-int8": record["int8"]["size_mb"],
    }
    rows = {}
    for backend in VARIANTS:
        with reading(run, backend=backend):
            metrics = task.evaluate(run, data=None, split="test", tta=False)
        score = metrics.get("auc", metrics.get("dice_mean"))
        rows[backend] = {"score": score, "size_mb": round(sizes[backend], 3), **speed(run, card, backend, x)}
    base = rows["torch"]
    for row in rows.values():
        row["speedup_batch1"] = base["latency_ms"] / row["latency_ms"]
        row["speedup_batch64"] = row["throughput"] / base["throughput"]
        row["size_ratio"] = row["size_mb"] / base["size_mb"]
        row["score_change_points"] = 100 * (row["score"] - base["score"])
    metric = "AUC" if "auc" in metrics else "mean Dice"
    return {
        "set": name,
        "model": card["model"]["name"],
        "metric": metric,
        "epochs": epochs,
        "train_minutes": round(train_minutes, 2),
        "input": list(x.shape[1:]),
        "parity_max_abs_diff": record["parity"]["max_abs_diff"],
        "int8_argmax_agreement": record["int8"]["argmax_agreement"],
        "variants": rows,
    }


def markdown(results: dict) -> str:
    lines = [
        f"Deployment on this CPU ({results['cpu']}, 1 thread), ratios to FP32 PyTorch measured in the same run.\n",
        "| set (metric) | variant | size MB | size ratio | batch-1 latency | speed-up b1 | speed-up b64 | metric "
        "| change |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["sets"]:
        for key, label in VARIANTS.items():
            row = entry["variants"][key]
            lines.append(
                f"| {entry['set']} ({entry['metric']}) | {label} | {row['size_mb']:.2f} | {row['size_ratio']:.2f} | "
                f"{row['latency_ms']:.2f} ms | {row['speedup_batch1']:.2f}x | {row['speedup_batch64']:.2f}x | "
                f"{row['score']:.4f} | {row['score_change_points']:+.2f} pt |"
            )
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if "model name" in line), "unknown")
    vnni = "VNNI" if "avx512_vnni" in flags or "avx_vnni" in flags else "no VNNI"
    return f"{model}, {'AVX-512' if 'avx512f' in flags else 'AVX2'}, {vnni}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="breastmnist,pneumoniamnist,hippocampus")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "results" / "deploy"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as work:
        sets = [one_set(name, epochs=args.epochs, work=Path(work)) for name in args.sets.split(",")]
    results = {"cpu": cpu_name(), "threads": 1, "sets": sets}
    write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
