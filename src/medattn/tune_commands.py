"""The `tune` commands (`cv`, `grid`): cross-validation by patient and hyperparameter search, registered on
cli.py's app."""

from __future__ import annotations

from pathlib import Path

import typer

from medattn.cli import app
from medattn.cli_common import (
    BAG_HELP,
    CLINICAL_DROPOUT_HELP,
    CLINICAL_HELP,
    COLUMNS_HELP,
    DROP_HELP,
    DROPOUT_HELP,
    FORMAT_HELP,
    FUSION_HELP,
    MODALITIES_HELP,
    MODALITY_FUSION_HELP,
    SPACE_HELP,
    TIME_HELP,
    comma_list,
    configured,
    emit,
    parse_size,
)

tune_app = typer.Typer(no_args_is_help=True, help="Cross-validate by patient, and search hyperparameters.")
app.add_typer(tune_app, name="tune")


@tune_app.command("cv")
def tune_cv(
    data: str = typer.Option(None, "--data", help="a dataset of any task (see `medattn train --help`)"),
    folds: int = typer.Option(5, "--folds", help="number of folds (train+val pooled; the test split is kept out)"),
    out: Path = typer.Option(..., "--out", help="directory for the fold runs, cv.json and ensemble.json"),
    repeats: int = typer.Option(1, "--repeats", help="repeat with other fold splits (seed + repeat)"),
    group: str = typer.Option("auto", "--group", help="auto (by patient when ids exist) | patient | none"),
    config: Path = typer.Option(None, "--config", help="YAML run config; flags override it"),
    task: str = typer.Option(None, "--task", help="the task (default: recognised from the data)"),
    labels: str = typer.Option(None, "--labels", help="class labels: binary | multiclass | multilabel | ordinal"),
    targets: str = typer.Option(None, "--targets", help="CSV column(s) of continuous targets, e.g. age or a,b"),
    modality: str = typer.Option(None, "--modality", help="the intensity recipe (see `medattn train --help`)"),
    drop_bad_boxes: bool = typer.Option(None, "--drop-bad-boxes", help=DROP_HELP),
    box_format: str = typer.Option(None, "--box-format", help=FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=SPACE_HELP),
    bag: str = typer.Option(None, "--bag", help=BAG_HELP),
    clinical: str = typer.Option(None, "--clinical", help=CLINICAL_HELP),
    clinical_columns: str = typer.Option(None, "--clinical-columns", help=COLUMNS_HELP),
    clinical_fusion: str = typer.Option(None, "--clinical-fusion", help=FUSION_HELP),
    clinical_dropout: float = typer.Option(None, "--clinical-dropout", help=CLINICAL_DROPOUT_HELP),
    modalities: str = typer.Option(None, "--modalities", help=MODALITIES_HELP),
    fusion: str = typer.Option(None, "--fusion", help=MODALITY_FUSION_HELP),
    modality_dropout: float = typer.Option(None, "--modality-dropout", help=DROPOUT_HELP),
    model: str = typer.Option(None, "--model"),
    epochs: int = typer.Option(None, "--epochs"),
    time_limit: float = typer.Option(None, "--time-limit", help=TIME_HELP + " (per fold)"),
    seed: int = typer.Option(None, "--seed"),
    batch_size: int = typer.Option(None, "--batch-size"),
    size: str = typer.Option(None, "--size", help="whole-image input size, e.g. 64 or 64,64 or 32,64,64"),
    patch: str = typer.Option(None, "--patch", help="patch-trained tasks: training patch, e.g. 96 or 32,48,32"),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    resume: bool = typer.Option(False, "--resume", help="continue the cross-validation in --out (its saved plan)"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """K-fold cross-validation, grouped by patient (stratified where the task has classes); the fold runs
    become an ensemble that `evaluate` and `predict` take."""
    from medattn.config import RunConfig
    from medattn.errors import ConfigError
    from medattn.tune.cv import CVSettings, run_cv
    from medattn.tune.report import print_cv

    settings = CVSettings(folds=folds, repeats=repeats, group=group)
    if resume:
        result = run_cv(None, out, settings=settings, resume=True, force=force)
        emit(result, as_json, print_cv)
        return
    if data is None and config is None:
        raise ConfigError("--data is required (or data.path in --config)")
    overrides = {
        "task": task,
        "data.path": data,
        "data.labels": labels,
        "data.targets": comma_list(targets),
        "data.modality": modality,
        "data.drop_bad_boxes": drop_bad_boxes,
        "data.box_format": box_format,
        "data.box_space": box_space,
        "data.bag": bag,
        "data.clinical": clinical,
        "data.clinical_columns": comma_list(clinical_columns),
        "data.clinical_fusion": clinical_fusion,
        "train.clinical_dropout": clinical_dropout,
        "data.modalities": comma_list(modalities),
        "model.fusion": fusion,
        "train.modality_dropout": modality_dropout,
        "model.name": model,
        "train.epochs": epochs,
        "train.time_limit": time_limit,
        "train.seed": seed,
        "train.batch_size": batch_size,
        "train.device": device,
        "data.size": parse_size(size),
        "data.patch": parse_size(patch, repeat=False),
    }
    cfg, _ = configured(config, overrides, model=model)
    result = run_cv(RunConfig.from_dict(cfg.to_dict()), out, settings=settings, resume=False, force=force)
    emit(result, as_json, print_cv)


@tune_app.command("grid")
def tune_grid(
    data: str = typer.Option(None, "--data", help="the dataset (overrides base.data.path in the grid file)"),
    grid: Path = typer.Option(None, "--grid", help="YAML: base config, search: {dotted.key: [values]}, folds, ..."),
    out: Path = typer.Option(..., "--out", help="directory for study.db, the trials, results.md and best.yaml"),
    folds: int = typer.Option(None, "--folds", help="overrides folds in the grid file"),
    sampler: str = typer.Option(None, "--sampler", help="grid | tpe | random (overrides the grid file)"),
    trials: int = typer.Option(None, "--trials", help="how many points to try (default: the whole grid)"),
    resume: bool = typer.Option(False, "--resume", help="continue the search in --out; finished trials are kept"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Search hyperparameters with Optuna, every point scored by cross-validation; writes best.yaml."""
    from medattn.errors import ConfigError
    from medattn.tune.grid import load_spec_for_resume, run_grid
    from medattn.tune.report import print_grid
    from medattn.tune.space import load_grid, with_overrides

    if grid is None and not resume:
        raise ConfigError("--grid is required (a YAML file; see examples/grid_attn_resnet.yaml)")
    spec = load_grid(grid) if grid is not None else load_spec_for_resume(out, data)
    spec = with_overrides(spec, data=data, folds=folds, sampler=sampler, trials=trials)
    summary = run_grid(spec, out, resume=resume, force=force)
    emit(summary, as_json, print_grid)
