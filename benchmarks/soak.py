"""Kill -9 soak: train a tiny classification run and a tiny segmentation run, kill each 20 times at random moments
(in an epoch, in validation, in a checkpoint write, in turn), resume after every kill, and check that the final
weights, best weights, history and metrics are bit-identical to an unbroken run's and that no checkpoint on disk
was ever unreadable. Writes results/soak.json and .md.

    OMP_NUM_THREADS=1 python benchmarks/soak.py --kills 20 --out results/soak
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import write_results
from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir
from medattn.soak import differences, epoch_seconds, killed_run, phantom_config


def soak(kind: str, *, kills: int, epochs: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"medattn-soak-{kind}-") as scratch:
        root = Path(scratch)
        config = phantom_config(root, kind, epochs=epochs)
        fit(config, prepare_run_dir(root / "unbroken", resume=False, force=False), quiet=True)
        started = time.perf_counter()
        report = killed_run(
            config,
            root / "killed",
            kills=kills,
            rng=random.Random(seed),
            epoch_seconds=epoch_seconds(root / "unbroken"),
        )
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["differences"] = differences(root / "unbroken", root / "killed")
    report["kills"] = sum(report["killed_in"].values())
    report["bit_identical"] = not report["differences"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/soak")
    args = parser.parse_args()
    results = {
        task: soak(kind, kills=args.kills, epochs=args.epochs, seed=args.seed)
        for task, kind in (("classification", "images"), ("segmentation", "masks"))
    }
    rows = ["| run | kills (epoch / validation / checkpoint) | starts | unreadable checkpoints | bit-identical |"]
    rows.append("|---|---|---|---|---|")
    for task, r in results.items():
        phases = " / ".join(str(r["killed_in"][p]) for p in ("epoch", "validate", "checkpoint"))
        rows.append(
            f"| {task} | {r['kills']} ({phases}) | {r['starts']} | {len(r['unreadable'])} | {r['bit_identical']} |"
        )
    payload = {**results, "command": f"OMP_NUM_THREADS=1 python benchmarks/soak.py --kills {args.kills}"}
    write_results(args.out, payload, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
