"""Fuzz every reader: thousands of damaged copies of real files per format, each read in a child process with a
time limit. Prints and writes the count of each outcome per format (results/fuzz.json, .md); each defect (an
untyped exception, a typed error not naming the file, a half-read or non-finite array, a hang) is listed with
the job that reproduces it.

    OMP_NUM_THREADS=1 python benchmarks/fuzz.py --per-format 10000 --out results/fuzz
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from functools import partial
from pathlib import Path

from common import write_results
from medattn.fuzz import is_defect, plan, run_mutants
from medattn.fuzz_targets import seed_counts, targets

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-format", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per read before it counts as a hang")
    parser.add_argument("--formats", default="", help="comma-separated subset of the targets (default: all)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", default="results/fuzz")
    args = parser.parse_args()

    counts_of_seeds = seed_counts(args.data, [n for n in args.formats.split(",") if n] or None)
    defects: list[dict] = []
    damages: Counter = Counter()
    started = time.perf_counter()

    def record(job, damage, outcome, detail):
        damages[job[0], damage, outcome] += 1
        if is_defect(outcome):
            where = detail.strip().splitlines()[-3:]
            defects.append({"job": list(job), "damage": damage, "outcome": outcome, "where": where})
            print("DEFECT", defects[-1], flush=True)

    jobs = plan(counts_of_seeds, args.per_format, args.seed)
    counts = run_mutants(partial(targets, data=args.data), jobs, time_limit=args.time_limit, on_result=record)
    names = list(counts_of_seeds)
    outcomes = sorted({o for _, o in counts})
    per_format = {n: {o: counts[n, o] for o in outcomes if counts[n, o]} for n in names}
    payload = {
        "per_format": per_format,
        "defects_total": len(defects),
        "defects": defects,
        "by_damage": [{"format": f, "damage": d, "outcome": o, "count": c} for (f, d, o), c in sorted(damages.items())],
        "mutants_per_format": args.per_format,
        "seed": args.seed,
        "time_limit_s": args.time_limit,
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"OMP_NUM_THREADS=1 python benchmarks/fuzz.py --per-format {args.per_format} --seed {args.seed}",
    }
    rows = ["| format | " + " | ".join(outcomes) + " | defects |", "|---" * (len(outcomes) + 2) + "|"]
    for name in names:
        bad = sum(c for o, c in per_format[name].items() if is_defect(o))
        rows.append(f"| {name} | " + " | ".join(str(per_format[name].get(o, 0)) for o in outcomes) + f" | {bad} |")
    write_results(args.out, payload, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
