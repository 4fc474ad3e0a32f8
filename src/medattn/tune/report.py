"""Readable summaries of a cross-validation and of a search, for the terminal (--json prints the dicts)."""

from __future__ import annotations

import json

COLUMNS = 5  # metrics shown per fold: the task's headline first, then the rest of its summary


def print_cv(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    settings = result["settings"]
    how = "grouped by patient" if settings["grouped_by_patient"] else "by image"
    title = f"{settings['folds']}-fold cross-validation x {settings['repeats']} of {result['data']} ({how})"
    table = Table(title=title)
    table.add_column("fold")
    mean, std = result["mean"], result["std"]
    keys = list(dict.fromkeys([result["metric"], *mean]))[:COLUMNS]
    for key in keys:
        table.add_column(key, justify="right")
    for row in result["folds"]:
        table.add_row(row["run"], *(_number(row.get(key)) for key in keys))
    table.add_row("mean ± std", *(f"{_number(mean.get(k))} ± {_number(std.get(k))}" for k in keys))
    console = Console()
    console.print(table)
    console.print(f"cv.json and the fold ensemble written to {result['dir']} (medattn evaluate {result['dir']})")


def print_grid(summary: dict) -> None:
    from rich.console import Console

    console = Console()
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    console.print(f"{len(done)} of {len(summary['trials'])} trials complete ({summary['sampler']} sampler)")
    for trial in done[:5]:
        metric = summary["metric"]
        score = f"{_number(trial['mean'].get(metric))} ± {_number(trial['std'].get(metric))}"
        console.print(f"  trial {trial['trial']}: {metric} {score}  {json.dumps(trial['params'])}")
    if summary["best"]:
        console.print(f"best configuration: {summary['best']['config']} (medattn train --config it)")
    console.print(f"all trials: {summary['dir']}/results.md")


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–"
