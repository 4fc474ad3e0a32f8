"""`evaluate --missing`: a run trained on named modalities or with clinical values scored without some of them
(`clinical` names the clinical vector: the image-only path), or on every subset that keeps an image
(`all-subsets`), each subset's metrics recorded beside the full-input ones in metrics.json."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from medattn.errors import ConfigError

ALL = "all-subsets"
CLINICAL = "clinical"  # the clinical vector, as --missing names it


def run_modalities(run: Path) -> list[str]:
    """The inputs the run's model may go without (its card): its modalities, then `clinical` when it was trained
    with clinical values; an error saying there are none."""
    from medattn.engine.loaded import read_card
    from medattn.runs import require_run
    from medattn.tune.ensemble import member_paths

    card = read_card(require_run(member_paths(Path(run))[0]))
    names = list(card["model"]["options"].get("modalities") or [])
    if (card.get("clinical") or {}).get("columns"):
        names.append(CLINICAL)
    if not names:
        raise ConfigError(
            f"--missing: {run} was not trained with named modalities (train --modalities a,b,c) or clinical values "
            f"(train --clinical)"
        )
    return names


def missing_sets(run: Path, text: str) -> list[tuple[str, ...]]:
    """The inputs to leave out, per evaluation: one set from `a,b`, or the complement of every subset that keeps
    at least one image modality (a run without modalities always keeps its image)."""
    names = run_modalities(run)
    if text != ALL:
        return [tuple(part.strip() for part in text.split(",") if part.strip())]
    images = [n for n in names if n != CLINICAL]
    present = [c for k in range(len(names), 0, -1) for c in combinations(names, k)]
    if not images:
        present.append(())  # the image alone
    kept = [c for c in present if not images or set(c) & set(images)]
    return [tuple(n for n in names if n not in chosen) for chosen in kept]


def subset_name(names: list[str], absent: tuple[str, ...]) -> str:
    """`t1+flair+clinical`; `image+clinical` and `image` for a run whose image has no named modalities."""
    kept = [n for n in names if n not in absent]
    return "+".join(kept if any(n != CLINICAL for n in names) else ["image", *kept])


def evaluate_missing(task, run: Path, text: str, *, reading, **options) -> dict:
    """Metrics without the modalities `text` names; with all-subsets, {"subsets": {"t1+flair": metrics, ...}}."""
    names = run_modalities(run)
    results = {}
    for absent in missing_sets(run, text):
        with reading(missing=absent):
            metrics = task.evaluate(run, **options)
        results[subset_name(names, absent)] = metrics
    if text != ALL:
        return next(iter(results.values()))
    first = next(iter(results.values()))
    headline = task.fold_metric if task.fold_metric in first else f"{task.fold_metric}_mean"  # dice: dice_mean
    table = {subset: metrics.get(headline) for subset, metrics in results.items()}
    return {
        "run": str(run),
        "missing": ALL,
        "modalities": names,
        "metric": headline,
        "table": table,
        "subsets": results,
    }


def print_subsets(payload: dict) -> None:
    print(f"{payload['run']}: {payload['metric']} by the inputs present")
    for subset, metrics in payload["subsets"].items():
        ci = metrics.get(f"{payload['metric']}_ci")
        interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        print(f"  {subset:<30} {metrics.get(payload['metric'], float('nan')):.4f}{interval}")
