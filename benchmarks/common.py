"""What every benchmark script does at the end: results/<name>.json, results/<name>.md, the table on stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: str | Path, payload, table: str) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)


def timed_fit(config, run: Path, evaluate) -> dict:
    """Train `config` into `run`, then `evaluate(run) -> test metrics (with n)`; the minutes and seconds per image
    are kept in run/benchmark-timing.json. A finished run is reused; a killed one resumes from its checkpoint (its
    minutes then are the epochs' own seconds, validation left out: the first part's wall clock is lost)."""
    import csv
    import time

    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    timing = run / "benchmark-timing.json"
    if not timing.is_file():
        resumed = (run / "checkpoint" / "last.pt").is_file()
        started = time.perf_counter()
        fit(config, run if resumed else prepare_run_dir(run, resume=False, force=True), resume=resumed, quiet=True)
        minutes = (time.perf_counter() - started) / 60
        if resumed:
            with (run / "history.csv").open(newline="") as handle:
                minutes = sum(float(row["seconds"]) for row in csv.DictReader(handle)) / 60
        started = time.perf_counter()
        test = evaluate(run)
        seconds = (time.perf_counter() - started) / test["n"]
        payload = {"train_minutes": minutes, "seconds_per_image": seconds, "resumed": resumed}
        timing.write_text(json.dumps(payload) + "\n")
    return json.loads(timing.read_text())
