"""The `medattn` command line. Heavy libraries load inside commands so `--help` answers at once."""

from __future__ import annotations

from pathlib import Path

import typer

from medattn import deploy_commands
from medattn.cli_common import (
    BACKEND_HELP,
    BAG_HELP,
    CHANNELS_HELP,
    CLINICAL_DROPOUT_HELP,
    CLINICAL_HELP,
    COLUMNS_HELP,
    DEGRADE_HELP,
    DROP_HELP,
    DROPOUT_HELP,
    FORMAT_HELP,
    FUSION_HELP,
    MISSING_HELP,
    MODALITIES_HELP,
    MODALITY_FUSION_HELP,
    PREDICT_CLINICAL_HELP,
    RANGE_HELP,
    SERIES_HELP,
    SLICE_HELP,
    SPACE_HELP,
    TIME_HELP,
    comma_list,
    configured,
    emit,
    parse_size,
)
from medattn.config import HEAD_WEIGHTS_HELP, HEADS_HELP
from medattn.errors import MedattnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Attention CNNs for medical images: train, evaluate, predict.",
)


@app.command()
def train(
    data: str = typer.Option(
        None,
        "--data",
        help="the dataset: an .npz, a folder, a CSV manifest or an MSD dataset.json; `medattn tasks` lists "
        "the layouts each task reads and recognises",
    ),
    out: Path = typer.Option(..., "--out", help="run directory to create"),
    task: str = typer.Option(None, "--task", help="the task (default: recognised from the data); see `medattn tasks`"),
    model: str = typer.Option(None, "--model", help="registered model name (see `medattn models`)"),
    epochs: int = typer.Option(None, "--epochs"),
    time_limit: float = typer.Option(None, "--time-limit", help=TIME_HELP),
    init: str = typer.Option(None, "--init", help="a finished run to start from (all layers but the head)"),
    teacher: str = typer.Option(
        None, "--teacher", help="a finished run to distil: its softened outputs join the labels in the loss"
    ),
    temperature: float = typer.Option(None, "--temperature", help="--teacher: softening temperature T (4)"),
    alpha: float = typer.Option(None, "--alpha", help="--teacher: the teacher's share of the loss (0.5)"),
    seed: int = typer.Option(None, "--seed"),
    config: Path = typer.Option(None, "--config", help="YAML run config; flags override it"),
    labels: str = typer.Option(
        None, "--labels", help="class labels: binary | multiclass | multilabel | ordinal (default: from the labels)"
    ),
    targets: str = typer.Option(
        None, "--targets", help="CSV column(s) of continuous targets to predict, e.g. age or a,b"
    ),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr"),
    size: str = typer.Option(None, "--size", help="whole-image input size, e.g. 64 or 64,64 or 32,64,64"),
    patch: str = typer.Option(
        None, "--patch", help="patch-trained tasks: training patch, e.g. 96 or 96,96 or 32,48,32"
    ),
    loss: str = typer.Option(None, "--loss", help="the task's loss (default: the task's own; errors list the others)"),
    sampler: str = typer.Option(None, "--sampler", help="shuffle | balanced (each class drawn equally often)"),
    series: str = typer.Option(None, "--series", help=SERIES_HELP),
    drop_bad_boxes: bool = typer.Option(None, "--drop-bad-boxes", help=DROP_HELP),
    box_format: str = typer.Option(None, "--box-format", help=FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=SPACE_HELP),
    source_channels: str = typer.Option(None, "--source-channels", help=CHANNELS_HELP.format("input", "0,2")),
    target_channels: str = typer.Option(None, "--target-channels", help=CHANNELS_HELP.format("output", "1")),
    degrade: str = typer.Option(None, "--degrade", help=DEGRADE_HELP),
    target_range: float = typer.Option(None, "--range", help=RANGE_HELP),
    bag: str = typer.Option(None, "--bag", help=BAG_HELP),
    clinical: str = typer.Option(None, "--clinical", help=CLINICAL_HELP),
    clinical_columns: str = typer.Option(None, "--clinical-columns", help=COLUMNS_HELP),
    clinical_fusion: str = typer.Option(None, "--clinical-fusion", help=FUSION_HELP),
    clinical_dropout: float = typer.Option(None, "--clinical-dropout", help=CLINICAL_DROPOUT_HELP),
    modalities: str = typer.Option(None, "--modalities", help=MODALITIES_HELP),
    fusion: str = typer.Option(None, "--fusion", help=MODALITY_FUSION_HELP),
    modality_dropout: float = typer.Option(None, "--modality-dropout", help=DROPOUT_HELP),
    heads: str = typer.Option(None, "--heads", help=HEADS_HELP),
    head_weights: str = typer.Option(None, "--head-weights", help=HEAD_WEIGHTS_HELP),
    modality: str = typer.Option(
        None,
        "--modality",
        help="auto | ct | mr | xray | rgb | ultrasound | minmax: the intensity recipe (default: from the data)",
    ),
    augment: str = typer.Option(
        None, "--augment", help="augmentation preset: xray | ct | mr | ultrasound | rgb | auto | default | none"
    ),
    threshold: str = typer.Option(None, "--threshold", help="binary: 0.5, youden, or sensitivity=0.9 (tuned on val)"),
    synthetic: str = typer.Option(
        None, "--synthetic", help="generated images (`medattn generate`) mixed into the training split only"
    ),
    synthetic_ratio: float = typer.Option(
        None, "--synthetic-ratio", help="--synthetic: synthetic images per real training image (default 1)"
    ),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    force: bool = typer.Option(False, "--force", help="replace an existing run directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train a model for the task of the data (`medattn tasks`), writing a run directory."""
    from medattn.engine import distributed
    from medattn.engine.checkpoint import resume_config
    from medattn.engine.trainer import fit
    from medattn.errors import ConfigError
    from medattn.runs import prepare_run_dir
    from medattn.tasks import task_for_config

    if resume:
        run = prepare_run_dir(out, resume=True, force=force)  # only reads: under torchrun every process checks
        cfg = resume_config(run)
        chosen = task_for_config(cfg)
    else:
        if data is None and config is None:
            raise ConfigError("--data is required (or data.path in --config)")
        overrides = {
            "task": task,
            "data.path": data,
            "data.labels": labels,
            "data.targets": comma_list(targets),
            "model.name": model,
            "model.init": init,
            "train.teacher": teacher,
            "train.distill_temperature": temperature,
            "train.distill_alpha": alpha,
            "train.epochs": epochs,
            "train.time_limit": time_limit,
            "train.seed": seed,
            "train.batch_size": batch_size,
            "train.lr": lr,
            "train.loss": loss,
            "train.sampler": sampler,
            "data.augment": augment,
            "data.modality": modality,
            "data.series": series,
            "data.drop_bad_boxes": drop_bad_boxes,
            "data.box_format": box_format,
            "data.box_space": box_space,
            "data.source_channels": parse_size(source_channels, repeat=False),
            "data.target_channels": parse_size(target_channels, repeat=False),
            "data.degrade": degrade,
            "data.target_range": target_range,
            "data.bag": bag,
            "data.clinical": clinical,
            "data.clinical_columns": comma_list(clinical_columns),
            "data.clinical_fusion": clinical_fusion,
            "train.clinical_dropout": clinical_dropout,
            "data.modalities": comma_list(modalities),
            "model.fusion": fusion,
            "train.modality_dropout": modality_dropout,
            "data.heads": comma_list(heads),
            "train.head_weights": head_weights,
            "train.threshold": threshold,
            "data.synthetic": synthetic,
            "data.synthetic_ratio": synthetic_ratio,
            "train.device": device,
            "data.size": parse_size(size),
            "data.patch": parse_size(patch, repeat=False),
        }
        cfg, chosen = configured(config, overrides, model=model)
        distributed.start(cfg.train.device)  # under torchrun: join the others; rank 0 alone creates the run
        run = distributed.on_main(lambda: prepare_run_dir(out, resume=False, force=force))
    try:
        result = fit(cfg, run, resume=resume)
    except BaseException:
        if distributed.is_main() and not resume and run.is_dir() and not any(run.iterdir()):
            run.rmdir()  # failed before writing anything: leave no empty run behind
        raise
    distributed.stop()
    if not distributed.is_main():
        return  # rank 0 reports for all
    emit(result, as_json, lambda r: print(chosen.summary(r)))


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="a finished run directory, or a cross-validation directory (its ensemble)"),
    data: str = typer.Option(None, "--data", help="dataset to score (default: the run's training data)"),
    split: str = typer.Option("test", "--split"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    series: str = typer.Option(None, "--series", help=SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=SLICE_HELP),
    backend: str = typer.Option("torch", "--backend", help=BACKEND_HELP),
    missing: str = typer.Option(None, "--missing", help=MISSING_HELP),
    features: str = typer.Option(
        None,
        "--features",
        help="runs that make images: a classifier run on the real data, in whose features FID is measured",
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Score a run on a split with its task's metrics and 95% confidence intervals; metrics.json in the run."""
    from functools import partial

    from medattn.engine.loaded import reading
    from medattn.errors import ConfigError
    from medattn.explain.report.build import write_report
    from medattn.tasks import task_for_run
    from medattn.tune.ensemble import is_ensemble

    task = task_for_run(run)
    options = {"features": features} if features is not None else {}
    if set(options) - task.evaluate_options:
        raise ConfigError(f"--features means nothing to a {task.name} run ({run})")
    if missing is not None:
        from medattn.evaluate.missing import ALL, evaluate_missing, print_subsets

        opened = partial(reading, run, series=series, slice_axis=slice_axis, backend=backend)
        result = evaluate_missing(task, run, missing, reading=opened, data=data, split=split, tta=tta)
        emit(result, as_json, print_subsets if missing == ALL else task.print_report)
        return
    with reading(run, series=series, slice_axis=slice_axis, backend=backend):
        metrics = task.evaluate(run, data=data, split=split, tta=tta, **options)
        if backend != "torch":
            metrics["backend"] = backend
        elif data is None and not tta and not is_ensemble(run):  # a single run on its own data: its split's report
            metrics["report"] = str(write_report(run, split=split))
    emit(metrics, as_json, task.print_report)


@app.command()
def generate(
    run: Path = typer.Argument(..., help="a finished run of a task that makes images (see `medattn tasks`)"),
    n: int = typer.Option(1000, "--n", help="how many images"),
    label: str = typer.Option(
        None, "--label", help="their class, by name or index (default: every class, in the training proportions)"
    ),
    out: Path = typer.Option(..., "--out", help="NAME.npz (MedMNIST layout) or a folder (class folders of PNGs)"),
    seed: int = typer.Option(0, "--seed", help="the noise the images start from"),
    steps: int = typer.Option(None, "--steps", help="DDIM sampling steps (default: the run's, 50)"),
    guidance: float = typer.Option(
        None, "--guidance", help="classifier-free guidance weight: 1 = conditional only (default: the run's, 2)"
    ),
    force: bool = typer.Option(False, "--force", help="replace images generated in --out before"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """New images from a run that makes them, written in its training data's layout: `medattn train --data REAL
    --synthetic OUT` mixes them into a classifier's training split."""
    from medattn.tasks import task_for_run

    task = task_for_run(run)
    options = {"label": label, "out": out, "seed": seed, "steps": steps, "guidance": guidance}
    result = task.generate(run, n=n, overwrite=force, **options)
    emit(result, as_json, task.print_predictions)


@app.command()
def report(
    run: Path = typer.Argument(..., help="a finished run directory"),
    data: str = typer.Option(None, "--data", help="dataset to report on (default: the run's training data)"),
    split: str = typer.Option("test", "--split"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Write RUN/report.html: model card, training curves, evaluation plots and explained test cases, one file."""
    from medattn.explain.report.build import write_report

    path = write_report(run, data=data, split=split)
    emit({"report": str(path)}, as_json, lambda p: print(f"report written to {p['report']}"))


@app.command()
def predict(
    run: Path = typer.Argument(..., help="a finished run directory, or a cross-validation directory (its ensemble)"),
    files: list[Path] = typer.Argument(..., help="DICOM files or series folders, NIfTI, PNG/JPEG"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    out_dir: Path = typer.Option(
        None, "--out-dir", help="tasks that write files (masks): where (default RUN/predictions)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="tasks that write files: replace those already there"),
    series: str = typer.Option(None, "--series", help=SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=SLICE_HELP),
    backend: str = typer.Option("torch", "--backend", help=BACKEND_HELP),
    missing: str = typer.Option(
        None, "--missing", help="runs trained with --modalities or --clinical: the inputs these files lack"
    ),
    clinical: str = typer.Option(None, "--clinical", help=PREDICT_CLINICAL_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Predict on image files (DICOM, NIfTI, PNG/JPEG) with a run, as its task does (labels, values, masks)."""
    from medattn.errors import ConfigError
    from medattn.tasks import task_for_run

    task = task_for_run(run)
    given = {"tta": tta, "out_dir": out_dir is not None, "overwrite": overwrite}
    flags = {"tta": "--tta", "out_dir": "--out-dir", "overwrite": "--overwrite"}
    for option, used in given.items():
        if used and option not in task.predict_options:
            raise ConfigError(f"{flags[option]} means nothing to a {task.name} run ({run})")
    from medattn.engine.loaded import reading

    absent = tuple(comma_list(missing) or ())
    with reading(run, series=series, slice_axis=slice_axis, backend=backend, missing=absent, clinical=clinical):
        result = task.predict(run, files, tta=tta, out_dir=out_dir, overwrite=overwrite, series=series)
    emit(result, as_json, task.print_predictions)


@app.command()
def explain(
    run: Path = typer.Argument(..., help="a finished run directory"),
    files: list[Path] = typer.Argument(None, help="image files to explain (or --data for a data set)"),
    method: str = typer.Option(
        "gradcam",
        "--method",
        help="attention | gradcam | gradcam++ | hirescam | occlusion | integrated_gradients; several comma-separated",
    ),
    target: str = typer.Option(None, "--target", help="the class or output to explain (default: the prediction)"),
    layer: str = typer.Option(None, "--layer", help="CAM layer, a module path (default: the last spatial block)"),
    region: str = typer.Option(
        "predicted", "--region", help="dense outputs: sum the class over the predicted region, or the data's mask"
    ),
    data: str = typer.Option(None, "--data", help="explain a split of this data set instead of files"),
    split: str = typer.Option("test", "--split"),
    limit: int = typer.Option(None, "--limit", help="at most this many images of the split"),
    out: Path = typer.Option(None, "--out", help="where the overlays go (default RUN/explanations)"),
    npy: bool = typer.Option(False, "--npy", help="also write each raw map as .npy"),
    score: bool = typer.Option(False, "--score", help="faithfulness and localisation against a random map"),
    removal: str = typer.Option("blur", "--removal", help="--score: blur | road (noisy linear imputation)"),
    steps: int = typer.Option(10, "--steps", help="--score: steps of the deletion and insertion curves"),
    seed: int = typer.Option(0, "--seed", help="--score: random maps, tie breaking and the bootstrap"),
    series: str = typer.Option(None, "--series", help=SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=SLICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Explain a run's predictions: attention maps, CAMs, occlusion or integrated gradients, as overlays."""
    from medattn.engine.loaded import reading
    from medattn.explain.command import print_explained, run_explain
    from medattn.progress import track

    with reading(run, series=series, slice_axis=slice_axis):
        result = run_explain(
            run,
            files,
            method=method,
            data=data,
            split=split,
            limit=limit,
            target=target,
            layer=layer,
            region=region,
            out=out,
            npy=npy,
            score=score,
            removal=removal,
            steps=steps,
            seed=seed,
            progress=lambda items: track(items, "explaining"),
        )
    emit(result, as_json, print_explained)


@app.command()
def models(
    dims: int = typer.Option(2, "--dims", help="count parameters for 2D or 3D input"),
    channels: int = typer.Option(1, "--channels", help="input channels to count parameters for"),
    classes: int = typer.Option(2, "--classes", help="outputs (classes) to count parameters for"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """List registered models: tasks, dimensions, parameter count for the given input (default options), and
    where the implementation comes from (medattn, or MONAI behind the registry)."""
    import medattn.models  # noqa: F401
    from medattn.registry import MODELS, create_model
    from medattn.tasks import all_tasks

    rows = []
    for entry in MODELS:
        built = dims in entry.dims
        model = (
            create_model(entry.name, spatial_dims=dims, in_channels=channels, num_classes=classes) if built else None
        )
        rows.append(
            {
                "name": entry.name,
                "tasks": [task.name for task in all_tasks() if task.model_tag in entry.tasks],
                "dims": list(entry.dims),
                "source": entry.source,
                "description": entry.description,
                "parameters": sum(p.numel() for p in model.parameters()) if built else None,
            }
        )
    emit(
        {"input": {"spatial_dims": dims, "channels": channels, "classes": classes}, "models": rows},
        as_json,
        lambda p: [
            print(
                f"{r['name']:<16} {','.join(r['tasks']):<26} {r['source']:<8}"
                f" {r['parameters'] or 0:>12,}  {r['description']}"
            )
            for r in p["models"]
        ],
    )


@app.command()
def tasks(as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")) -> None:
    """List the registered tasks: what each learns, its losses and the metric its best epoch is chosen on."""
    import medattn.models  # noqa: F401  (registers the models)
    from medattn.registry import MODELS
    from medattn.tasks import all_tasks

    rows = [
        {
            "name": task.name,
            "description": task.description,
            "data": task.layouts,
            "losses": list(task.losses),
            "select_metrics": list(task.select_metrics),
            "options": sorted(task.fields),
            "models": MODELS.names(task.model_tag),
        }
        for task in all_tasks()
    ]
    emit(
        {"tasks": rows},
        as_json,
        lambda p: [
            print(f"{r['name']}: {r['description']}\n  data: {r['data']}\n  losses: {', '.join(r['losses'])}")
            for r in p["tasks"]
        ],
    )


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="where the demo writes its data and runs"),
    force: bool = typer.Option(False, "--force", help="replace an existing demo folder"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Phantom data for every task -> train an attention model -> evaluate -> predict -> where the runs are."""
    from medattn.demo import run_demo

    result = run_demo(out, force=force, verbose=not as_json)
    emit(result, as_json, lambda r: None)


from medattn import data_commands, tune_commands  # noqa: E402, F401  (their groups register on app)

app.command("export")(deploy_commands.export)
app.command("serve")(deploy_commands.serve)
app.command("compress")(deploy_commands.compress)


def main() -> None:
    try:
        app()
    except MedattnError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
