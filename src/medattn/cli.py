"""The `medattn` command line. Heavy libraries load inside commands so `--help` answers at once."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from medattn.errors import MedattnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Attention CNNs for medical images: train, evaluate, predict.",
)


def _strict(value):
    """Strict JSON: NaN and infinities (an AUC with one class present) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _emit(payload: dict, as_json: bool, human) -> None:
    """One JSON object on stdout with --json; a readable summary otherwise."""
    if as_json:
        sys.stdout.write(json.dumps(_strict(payload), allow_nan=False, default=float) + "\n")
    else:
        human(payload)


@app.command()
def train(
    data: str = typer.Option(
        None,
        "--data",
        help="an .npz (MedMNIST layout), a class-per-folder tree or a CSV; for segmentation a folder with "
        "images/ and masks/, an MSD dataset.json, or a CSV with image and mask columns",
    ),
    out: Path = typer.Option(..., "--out", help="run directory to create"),
    model: str = typer.Option(None, "--model", help="registered model name (see `medattn models`)"),
    epochs: int = typer.Option(None, "--epochs"),
    init: str = typer.Option(None, "--init", help="a finished run to start from (all layers but the head)"),
    seed: int = typer.Option(None, "--seed"),
    config: Path = typer.Option(None, "--config", help="YAML run config; flags override it"),
    task: str = typer.Option(
        None, "--task", help="binary | multiclass | multilabel | ordinal | segmentation (default: inferred)"
    ),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr"),
    size: str = typer.Option(None, "--size", help="input size, e.g. 64 or 64,64 or 32,64,64"),
    patch: str = typer.Option(None, "--patch", help="segmentation: training patch, e.g. 96 or 96,96 or 32,48,32"),
    loss: str = typer.Option(None, "--loss", help="ce | weighted_ce | focal; segmentation: dice_ce | focal | tversky"),
    sampler: str = typer.Option(None, "--sampler", help="shuffle | balanced"),
    augment: str = typer.Option(
        None, "--augment", help="augmentation preset: xray | ct | mr | ultrasound | rgb | auto | default | none"
    ),
    threshold: str = typer.Option(None, "--threshold", help="binary: 0.5, youden, or sensitivity=0.9 (tuned on val)"),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train a classifier, or a segmenter when the data has masks, and write the run directory."""
    from medattn.config import RunConfig, load_config
    from medattn.data.segmentation import is_segmentation_data
    from medattn.errors import ConfigError
    from medattn.runs import prepare_run_dir
    from medattn.train import distributed
    from medattn.train.engine import fit
    from medattn.train.segment import fit_segmentation

    if resume:
        run = prepare_run_dir(out, resume=True, force=force)  # only reads: under torchrun every process checks
        cfg = load_config(run / "config.yaml")
    else:
        cfg = load_config(config) if config else RunConfig()
        if data is None and not cfg.data.path:
            raise ConfigError("--data is required (or data.path in --config)")
        overrides = {
            ("data", "path"): data,
            ("data", "task"): task,
            ("model", "name"): model,
            ("model", "init"): init,
            ("train", "epochs"): epochs,
            ("train", "seed"): seed,
            ("train", "batch_size"): batch_size,
            ("train", "lr"): lr,
            ("train", "loss"): loss,
            ("train", "sampler"): sampler,
            ("data", "augment"): augment,
            ("train", "threshold"): threshold,
            ("train", "device"): device,
            ("data", "size"): _parse_size(size),
            ("data", "patch"): _parse_size(patch, repeat=False),
        }
        for (section, key), value in overrides.items():
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if model is not None and config is None:
            cfg.model.options = {}
        if cfg.data.task is None and is_segmentation_data(cfg.data.path):
            cfg.data.task = "segmentation"  # the data has masks
        cfg = RunConfig.from_dict(cfg.to_dict())
        import medattn.models  # noqa: F401  (registers the models, so a bad name fails before any work)
        from medattn.registry import MODELS

        MODELS.get(cfg.model.name)
        distributed.start(cfg.train.device)  # under torchrun: join the others; rank 0 alone creates the run
        run = distributed.on_main(lambda: prepare_run_dir(out, resume=False, force=force))
    try:
        result = (fit_segmentation if cfg.data.task == "segmentation" else fit)(cfg, run, resume=resume)
    except BaseException:
        if distributed.is_main() and not resume and run.is_dir() and not any(run.iterdir()):
            run.rmdir()  # failed before writing anything: leave no empty run behind
        raise
    distributed.stop()
    if not distributed.is_main():
        return  # rank 0 reports for all
    _emit(
        result,
        as_json,
        lambda r: print(
            f"best epoch {r['best_epoch']}/{r['epochs_run']}: "
            + (
                f"val dice {r['val']['dice']:.4f}"
                if r.get("task") == "segmentation"
                else f"val auc {r['val'].get('auc', float('nan')):.4f} acc {r['val'].get('acc', float('nan')):.4f}"
            )
            + f"\nrun written to {r['run']}"
        ),
    )


def _parse_size(text: str | None, *, repeat: bool = True) -> list[int] | None:
    """Parse "64,64" -> [64, 64]; one number is repeated for both axes of an image, or kept as is (repeat=False)."""
    from medattn.errors import ConfigError

    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise ConfigError(f"{text!r}: expected integers such as 64 or 64,64 (--size, --patch)") from error
    return sizes * 2 if len(sizes) == 1 and repeat else sizes


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="a finished run directory"),
    data: str = typer.Option(None, "--data", help="dataset to score (default: the run's training data)"),
    split: str = typer.Option("test", "--split"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Score a run on a split: AUC, accuracy, sensitivity/specificity, F1, ECE; or Dice, IoU, HD95, ASSD; 95% CIs."""
    from medattn.evaluate.report import evaluate_run, print_report

    metrics = evaluate_run(run, data=data, split=split, tta=tta)
    _emit(metrics, as_json, print_report)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="a finished run directory"),
    files: list[Path] = typer.Argument(..., help="DICOM files or series folders, NIfTI, PNG/JPEG"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    out_dir: Path = typer.Option(None, "--out-dir", help="segmentation: where masks go (default RUN/predictions)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="segmentation: replace masks already there"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Classify image files with a trained run, or write their masks (NIfTI or PNG) with a segmentation run."""
    from medattn.evaluate.report import predict_files
    from medattn.segment_predict import is_segmentation_run, predict_masks, print_masks

    if is_segmentation_run(run):
        _emit(predict_masks(run, files, out_dir=out_dir, overwrite=overwrite), as_json, print_masks)
        return
    result = predict_files(run, files, tta=tta)

    def human(payload):
        for row in payload["predictions"]:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in row["probabilities"].items())
            print(f"{row['file']}: {row['class']} ({probs})")

    _emit(result, as_json, human)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")) -> None:
    """List registered models with parameter counts (2D, 1 channel, 2 classes, default options)."""
    import medattn.models  # noqa: F401
    from medattn.registry import MODELS, create_model

    rows = []
    for entry in MODELS:
        model = create_model(entry.name, spatial_dims=2, in_channels=1, num_classes=2)
        rows.append(
            {
                "name": entry.name,
                "tasks": list(entry.tasks),
                "description": entry.description,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    _emit(
        {"models": rows},
        as_json,
        lambda p: [
            print(f"{r['name']:<16} {','.join(r['tasks']):<15} {r['parameters']:>12,}  {r['description']}")
            for r in p["models"]
        ],
    )


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="where the demo writes its data and runs"),
    force: bool = typer.Option(False, "--force", help="replace an existing demo folder"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Phantom data -> train an attention model -> evaluate -> print metrics and where the run is."""
    from medattn.demo import run_demo

    result = run_demo(out, force=force, verbose=not as_json)
    _emit(result, as_json, lambda r: None)


data_app = typer.Typer(no_args_is_help=True, help="Look at a dataset before training on it.")
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="an .npz (MedMNIST layout), a class-per-folder tree or a CSV"),
    task: str = typer.Option(None, "--task", help="binary | multiclass | multilabel | ordinal (default: inferred)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Counts per class, split and patient; sizes, spacing, intensities; duplicates across splits; a loss to use."""
    from medattn.data.inspect import inspect_path
    from medattn.progress import track

    report = inspect_path(path, task=task, progress=lambda items: track(items, "hashing images"))

    def human(r):
        print(f"{r['path']} ({r['kind']}, {r['task']}): classes {', '.join(r['class_names'])}")
        for split, counts in r["class_counts"].items():
            print(f"  {split:<5} {r['splits'][split]:>7} images  per class {counts}")
        if r["patients"]:
            print(
                f"  patients per split {r['patients']['per_split']}; "
                f"in more than one split: {r['patients']['in_more_than_one_split']}"
            )
        print(f"  shapes {r['images']['shapes']}  dtypes {r['images']['dtypes']}  spacing {r['images']['spacing_mm']}")
        print(f"  intensity {r['images']['intensity']}")
        print(
            f"  identical images in more than one split: {r['duplicates_across_splits']}; "
            f"repeated within a split: {r['duplicates_within_splits']}"
        )
        print(f"  recommended: {r['recommendation']['flag']} ({r['recommendation']['why']})")

    _emit(report, as_json, human)


tune_app = typer.Typer(no_args_is_help=True, help="Cross-validate by patient, and search hyperparameters.")
app.add_typer(tune_app, name="tune")


@tune_app.command("cv")
def tune_cv(
    data: str = typer.Option(None, "--data", help="an .npz (MedMNIST layout), a class-per-folder tree or a CSV"),
    folds: int = typer.Option(5, "--folds", help="number of folds (train+val pooled; the test split is kept out)"),
    out: Path = typer.Option(..., "--out", help="directory for the fold runs, cv.json and ensemble.json"),
    repeats: int = typer.Option(1, "--repeats", help="repeat with other fold splits (seed + repeat)"),
    group: str = typer.Option("auto", "--group", help="auto (by patient when ids exist) | patient | none"),
    config: Path = typer.Option(None, "--config", help="YAML run config; flags override it"),
    model: str = typer.Option(None, "--model"),
    epochs: int = typer.Option(None, "--epochs"),
    seed: int = typer.Option(None, "--seed"),
    size: str = typer.Option(None, "--size", help="input size, e.g. 64 or 64,64 or 32,64,64"),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    resume: bool = typer.Option(False, "--resume", help="continue the cross-validation in --out (its saved plan)"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Stratified k-fold cross-validation, grouped by patient; the fold models become an ensemble."""
    from medattn.config import RunConfig, load_config
    from medattn.errors import ConfigError
    from medattn.tune.cv import CVSettings, run_cv
    from medattn.tune.report import print_cv

    cfg = load_config(config) if config else RunConfig()
    overrides = {
        ("data", "path"): data,
        ("model", "name"): model,
        ("train", "epochs"): epochs,
        ("train", "seed"): seed,
        ("train", "device"): device,
        ("data", "size"): _parse_size(size),
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(cfg, section), key, value)
    if model is not None and config is None:
        cfg.model.options = {}
    if not resume and not cfg.data.path:
        raise ConfigError("--data is required (or data.path in --config)")
    settings = CVSettings(folds=folds, repeats=repeats, group=group)
    result = run_cv(RunConfig.from_dict(cfg.to_dict()), out, settings=settings, resume=resume, force=force)
    _emit(result, as_json, print_cv)


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
    _emit(summary, as_json, print_grid)


def main() -> None:
    try:
        app()
    except MedattnError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
