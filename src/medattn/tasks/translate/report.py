"""`evaluate`, `data inspect` and the report section for translation runs and data.

`evaluate` translates every image of a split (the run's own split, rebuilt as training carved it, or another
data set's) and scores it beside the two trivial baselines fitted on the training split (baselines.py), all on
the target's stored intensities (metrics.py); it writes `translation-<split>.png`, six evenly spaced cases:
source, target, model, mean image, intensity mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import DataError
from medattn.runs import read_json, record_metrics

FIGURE_CASES = 6
BASELINES = ("mean_image", "intensity_mapping")


def open_like_training(run, data: str | None):
    """The run's data with its splits exactly as training carved them, or `data` read with the run's options."""
    from medattn.tasks import get_task
    from medattn.tasks.translate.sources import ensure_splits, open_pairs

    config = run.config
    if data is None or Path(data).resolve() == Path(config.data.path).resolve():
        return get_task(run.task).open(config)
    c = config.data
    source = open_pairs(data, source_channels=c.source_channels, target_channels=c.target_channels, degrade=c.degrade)
    ensure_splits(source, val_fraction=c.val_fraction, test_fraction=c.test_fraction, seed=config.train.seed)
    return source


def score_split(run_dir, source, split: str, *, ci: bool = False, figure: Path | None = None) -> dict:
    """{"model": summary, "baselines": {name: summary}, "data_range": ...} over the split's pairs, for a run or
    the mean of a fold ensemble's members (the baselines are the first member's)."""
    from medattn.progress import track
    from medattn.tasks.translate.baselines import baseline_predictions, load_baselines
    from medattn.tasks.translate.data import read_pair
    from medattn.tasks.translate.inference import target_scale, translate_stored
    from medattn.tasks.translate.metrics import image_scores, summarise
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir) if isinstance(run_dir, str | Path) else run_dir
    if split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    first = run.members[0]
    scale, baselines = target_scale(first.card), load_baselines(first.path)
    pairs = source.splits[split]
    shown = set(np.linspace(0, len(pairs) - 1, min(len(pairs), FIGURE_CASES)).round().astype(int).tolist())
    rows: dict[str, list] = {"model": [], **{name: [] for name in BASELINES}}
    subjects, cases = [], []
    for i, pair in enumerate(track(pairs, f"translating the {split} split")):
        raw, target, meta, where = read_pair(source, pair)
        truth = np.asarray(target, dtype=np.float64)
        stored = {"model": translate_stored(run.members, raw, meta, where=where)}
        trivial = baseline_predictions(baselines, first.spec.prepare(raw, meta, where=where))
        stored.update({name: scale.inverse(p).double().numpy() for name, p in trivial.items()})
        for name, image in stored.items():
            rows[name].append(image_scores(image, truth, data_range=scale.data_range))
        subjects.append(pair.patient_id or pair.name)
        if i in shown:
            cases.append((raw, truth, [stored[name] for name in ("model", *BASELINES)]))
    result = {
        "model": summarise(rows["model"], subjects, ci=ci),
        "baselines": {name: summarise(rows[name], subjects, ci=ci) for name in BASELINES},
        "data_range": scale.data_range,
    }
    if figure is not None:
        from medattn.tasks.translate.figures import case_row, mosaic, write_png

        pictures = [case_row(raw, [truth, *images], low=scale.low, high=scale.high) for raw, truth, images in cases]
        result["figure"] = str(write_png(figure, mosaic(pictures)))
    return result


def evaluate_run(run_dir, *, data: str | None, split: str, tta: bool) -> dict:
    from medattn.errors import ConfigError
    from medattn.tune.ensemble import load_ensemble

    if tta:
        raise ConfigError("--tta: translation has no test-time augmentation (a flipped anatomy is another image)")
    run = load_ensemble(run_dir)
    source = open_like_training(run, data)
    scored = score_split(run, source, split, ci=True, figure=run.path / f"translation-{split}.png")
    model = scored["model"]
    metrics = {
        "run": str(run.path),
        "data": source.path,
        "split": split,
        "task": run.task,
        **model,
        "data_range": scored["data_range"],
        "baselines": scored["baselines"],
        "beats_mean_image": bool(model["psnr"] > scored["baselines"]["mean_image"]["psnr"]),
        "figure": scored["figure"],
        "figure_columns": ["source", "target", "model", *BASELINES],
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "combine": "mean of member translations"}
    return record_metrics(run.path, split, metrics)


def _number(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4g}"


def metric_rows(metrics: dict) -> list[tuple[str, ...]]:
    """(what, metric, value, 95% CI) for the model and each baseline."""
    rows = []
    for what, summary in (("model", metrics), *metrics["baselines"].items()):
        for key in ("psnr", "ssim", "mae", "psnr_foreground", "ssim_foreground"):
            ci = summary.get(f"{key}_ci")
            rows.append((what, key, _number(summary[key]), f"{_number(ci[0])} – {_number(ci[1])}" if ci else ""))
    return rows


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']} images, {metrics['n_subjects']} "
        f"subjects; data range {metrics['data_range']:.4g})"
    )
    table = Table(title=title)
    for column, justify in (("", "left"), ("metric", "left"), ("value", "right"), ("95% CI", "right")):
        table.add_column(column, justify=justify)
    for row in metric_rows(metrics):
        table.add_row(*row)
    console = Console()
    console.print(table)
    verdict = "beats" if metrics["beats_mean_image"] else "does NOT beat"
    console.print(f"the model {verdict} the mean training image in PSNR; cases: {metrics['figure']}")


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from medattn.explain.report.figures import file_uri, img
    from medattn.explain.report.page import Section, table

    recorded = Path(run_dir) / "metrics.json"
    metrics = read_json(recorded).get(split) if recorded.is_file() and data is None else None
    if metrics is None or not Path(metrics.get("figure", "")).is_file():  # `evaluate` has not just scored it
        metrics = evaluate_run(run_dir, data=data, split=split, tta=False)
    body = table(metric_rows(metrics), ("", "metric", "value", "95% CI"))
    caption = " | ".join(metrics["figure_columns"])
    body += img(file_uri(Path(metrics["figure"])), caption) + f"<p>columns: {caption}</p>"
    return [Section(f"Evaluation: {split} split (n = {metrics['n']}, {metrics['n_subjects']} subjects)", body)]


def inspect_pairs(config, task, *, progress=iter) -> dict:
    """Pairs per split, shapes and channels, the target's stored range, patients in more than one split."""
    from medattn.tasks.translate.data import read_pair

    source = task.open(config)
    shapes, channels, low, high = set(), set(), np.inf, -np.inf
    for pair in progress([p for pairs in source.splits.values() for p in pairs]):
        x, y, _, _ = read_pair(source, pair)
        shapes.add(tuple(int(s) for s in y.shape[1:]))
        channels.add((x.shape[0], y.shape[0]))
        low, high = min(low, float(y.min())), max(high, float(y.max()))
    owners: dict[str, set] = {}
    for split, pairs in source.splits.items():
        for pair in pairs:
            if pair.patient_id:
                owners.setdefault(pair.patient_id, set()).add(split)
    shared = sorted(p for p, splits in owners.items() if len(splits) > 1)
    return {
        "path": source.path,
        "kind": source.kind,
        "task": task.name,
        "splits": {name: len(pairs) for name, pairs in source.splits.items()},
        "shapes": sorted(list(s) for s in shapes)[:10],
        "channels": [{"source": a, "target": b} for a, b in sorted(channels)],
        "target_range": [low, high],
        "patients": {"count": len(owners), "in_more_than_one_split": len(shared)} if owners else None,
        "notes": source.notes,
    }


def print_inspect(report: dict) -> None:
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    print(f"{report['path']} ({report['kind']}, {report['task']}): {splits}")
    print(f"  channels: {report['channels']}; shapes (first 10): {report['shapes']}")
    print(f"  target intensities {report['target_range'][0]:.4g} .. {report['target_range'][1]:.4g}")
    if report["patients"]:
        print(
            f"  patients: {report['patients']['count']}, in more than one split: "
            f"{report['patients']['in_more_than_one_split']}"
        )
