"""Estimated against measured peak memory: training and prediction on real MSD Hippocampus volumes, and prediction
on one Hippocampus case enlarged 4x per axis (64x the voxels, at the same spacing) by the float32 path and by the
float16 slab path that a small machine falls back to. Each case runs in its own child process, so its peak RSS
(VmHWM) is its own. Writes results/memory.json and .md.

    OMP_NUM_THREADS=1 python benchmarks/memory.py --out results/memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "msd_hippocampus"
CASES = 12  # training cases, as tests/test_readme.py's one-epoch run


def _dataset(work: Path, cases: int) -> Path:
    source = json.loads((DATA / "dataset.json").read_text())
    source["training"] = [
        {key: str((DATA / value).resolve()) for key, value in case.items()} for case in source["training"][:cases]
    ]
    target = work / "hippocampus" / "dataset.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(source))
    return target


def _enlarged(work: Path, factor: int) -> Path:
    """The first Hippocampus image with every voxel repeated `factor` times per axis, at the original spacing."""
    import numpy as np

    from medattn.data.readers import read_image, write_image

    image, meta = read_image(sorted((DATA / "imagesTr").glob("*.nii.gz"))[0])
    for axis in (1, 2, 3):
        image = np.repeat(image, factor, axis=axis)
    target = work / f"enlarged{factor}.nii.gz"
    write_image(target, image, meta)
    return target


def child_train(work: Path, cases: int) -> dict:
    from medattn.config import RunConfig
    from medattn.engine import train_memory
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    seen = {}
    measure = train_memory.estimate_training

    def spy(*args, **kwargs):
        seen["estimate"] = measure(*args, **kwargs)
        return seen["estimate"]

    train_memory.estimate_training = spy
    config = RunConfig()
    config.data.path = str(_dataset(work, cases))
    config.train.epochs, config.train.threads = 1, 1
    result = fit(config, prepare_run_dir(work / "run", resume=False, force=True), quiet=True)
    batch = int(__import__("yaml").safe_load((work / "run" / "config.yaml").read_text())["train"]["batch_size"])
    return {"estimate": seen["estimate"].to_dict(batch), "notes": result["notes"]}


def child_predict(work: Path, image: Path, *, name: str, slab: bool) -> dict:
    from medattn.engine import window_memory
    from medattn.engine.memory import ENV, rss
    from medattn.tasks.segment.predict import predict_masks

    seen = {}
    measure, choose = window_memory.estimate_window, window_memory.choose_path

    def spy_estimate(*args, **kwargs):
        estimate = seen["estimate"] = measure(*args, **kwargs)
        seen["held"] = rss()
        if slab:  # a machine with room for float16 slabs, one window at a time, and not for more
            one = replace(estimate, batch=1)
            os.environ[ENV] = str(rss() + one.float16() + min(one.per_window, 32 * 1024**2) // 2)
        return estimate

    def spy_choose(estimate, shape):
        seen["path"], seen["windows"], note = choose(estimate, shape)
        seen["shape"] = list(shape)
        return seen["path"], seen["windows"], note

    window_memory.estimate_window, window_memory.choose_path = spy_estimate, spy_choose
    out = work / name
    started = time.perf_counter()
    predict_masks(work / "run", [image], out_dir=out, overwrite=True)
    estimate = replace(seen["estimate"], batch=seen["windows"])
    need = estimate.float16() if seen["path"] == "float16" else estimate.float32()
    return {
        "estimate": {"peak": seen["held"] + need, "held": seen["held"], **estimate.to_dict()},
        "path": seen["path"],
        "windows": seen["windows"],
        "shape": seen["shape"],
        "seconds": round(time.perf_counter() - started, 1),
        "mask": str(next(out.glob("*_mask.nii.gz"))),
    }


def run_child(name: str, work: Path, *extra: str) -> dict:
    started = time.perf_counter()
    command = [sys.executable, __file__, "--child", name, "--work", str(work), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MEDATTN_MEMORY_LIMIT", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["case"], row["wall_seconds"] = name, round(time.perf_counter() - started, 1)
    row["ratio"] = round(row["estimate"]["peak"] / row["peak_rss"], 3)
    return row


def agreement(a: str, b: str) -> float:
    from medattn.data.readers import read_image

    first, second = read_image(a)[0], read_image(b)[0]
    return float((first == second).mean())


def table(rows: list[dict], agree: float) -> str:
    mib = 1024**2
    lines = [
        "| case | path | volume | windows | estimated peak MiB | measured peak RSS MiB | estimate / measured |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        shape = "x".join(map(str, row.get("shape", []))) or "patches"
        lines.append(
            f"| {row['case']} | {row.get('path', 'train')} | {shape} | {row.get('windows', '')} | "
            f"{row['estimate']['peak'] / mib:.0f} | "
            f"{row['peak_rss'] / mib:.0f} | {row['ratio']:.2f} |"
        )
    lines.append(f"\nEnlarged volume: float16 slab mask equals the float32 mask on {agree:.4%} of voxels.\n")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/memory")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--child")
    parser.add_argument("--work")
    parser.add_argument("--image")
    parser.add_argument("--cases", type=int, default=CASES, help="Hippocampus cases the training case reads")
    args = parser.parse_args()
    if args.child:
        from medattn.engine.memory import peak_rss

        work = Path(args.work)
        if args.child == "train":
            row = child_train(work, args.cases)
        else:
            row = child_predict(work, Path(args.image), name=args.child, slab=args.child.endswith("slab"))
        print(json.dumps({**row, "peak_rss": peak_rss()}))
        return
    with tempfile.TemporaryDirectory(prefix="medattn-memory-") as scratch:
        work = Path(scratch)
        rows = [run_child("train", work)]
        one = sorted((DATA / "imagesTr").glob("*.nii.gz"))[0]
        rows.append(run_child("predict", work, "--image", str(one)))
        large = _enlarged(work, args.factor)
        rows.append(run_child(f"predict_x{args.factor}", work, "--image", str(large)))
        rows.append(run_child(f"predict_x{args.factor}_slab", work, "--image", str(large)))
        agree = agreement(rows[-2]["mask"], rows[-1]["mask"])
    for row in rows:
        row.pop("mask", None)  # a path in the deleted scratch folder
    payload = {"rows": rows, "enlarged_mask_agreement": agree, "factor": args.factor}
    write_results(args.out, payload, table(rows, agree))


if __name__ == "__main__":
    main()
