"""The `medattn` command line. Heavy libraries load inside commands so `--help` answers at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from medattn import deploy_commands
from medattn.config import HEAD_WEIGHTS_HELP, HEADS_HELP
from medattn.errors import MedattnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Attention CNNs for medical images: train, evaluate, predict.",
)

_SERIES_HELP = "DICOM folders holding several series: the one to read (SeriesInstanceUID or SeriesDescription)"
_TIME_HELP = "minutes of training, validation included: the first epoch is timed and the epochs that fit are kept"
_DROP_HELP = "box data: drop bad boxes (no area, outside the image, unknown class) with a count instead of failing"
_FORMAT_HELP = "MONAI box JSON: how its boxes are written, xyzxyz (corners) | cccwhd (centre, size)"
_SPACE_HELP = "MONAI box JSON: voxel | world (RAS+ mm) | world_lps (LPS mm, as ITK writes)"
_CHANNELS_HELP = "one multi-channel set translated: the {} channels, e.g. {}"
_DEGRADE_HELP = "pairs from single images: noise=0.05 (denoising) or downsample=2 (super-resolution)"
_RANGE_HELP = "the data range PSNR and SSIM use (default: the training targets' max - min as stored)"
_SLICE_HELP = "2D models on volumes: the axis (0, 1, 2 of the stored array) to cut slices along (default: the card's)"
_BAG_HELP = "bag-labelled CSV: the column whose rows form one bag with one label (e.g. patient_id: a patient's slices)"
_CLINICAL_HELP = "a per-patient CSV (patient_id and clinical columns) whose values join the image features"
_COLUMNS_HELP = "--clinical: the columns to use, e.g. age,gender (name:numeric or name:categorical to decide the kind)"
_FUSION_HELP = "--clinical: how the values join the image features: concat | film (default concat)"
_CLINICAL_DROPOUT_HELP = (
    "--clinical: chance a training image's (or bag's) clinical vector is all-unknown (default 0.2; bags: 0)"
)
_MISSING_HELP = (
    "runs trained with --modalities or --clinical: leave these out (e.g. flair, flair,t1 or clinical), or "
    "all-subsets: every subset"
)
_PREDICT_CLINICAL_HELP = (
    "runs trained with --clinical: the per-patient table; each file's patient is the longest patient_id found in "
    "its path (without it: the image-only path)"
)
_MODALITIES_HELP = (
    "names of the input modalities, e.g. t1,flair,t1c: the channels split evenly among them, in order; auto: as "
    "the data names its channels (MSD dataset.json modality, nnU-Net case_0000 files)"
)
_MODALITY_FUSION_HELP = "--modalities: early | late | hemis | cross_attention (default early)"
_DROPOUT_HELP = "--modalities: chance each modality of a training image is left out (at least one kept)"
_BACKEND_HELP = "torch | onnx | onnx-int8: the network in PyTorch, or exported (medattn export) in ONNX Runtime"


def _emit(payload: dict, as_json: bool, human) -> None:
    """One JSON object on stdout with --json; a readable summary otherwise."""
    from medattn.runs import finite

    if as_json:
        sys.stdout.write(json.dumps(finite(payload), allow_nan=False, default=float) + "\n")
    else:
        human(payload)


def _task_names() -> str:
    import medattn.tasks  # noqa: F401  (registers the tasks)
    from medattn.registry import TASKS

    return " | ".join(TASKS.names())


def _apply(cfg, overrides: dict) -> None:
    """Set each given flag's config field; the task checks later that it means something to it."""
    for key, value in overrides.items():
        if value is None:
            continue
        if "." not in key:
            setattr(cfg, key, value)
        else:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)


def _configured(config: Path | None, overrides: dict, *, model: str | None):
    """The run config from --config and the flags, its task found (given, or recognised from the data) and
    every flag checked against it before any data is read."""
    from medattn.config import RunConfig, load_config
    from medattn.tasks import task_for_config

    cfg = load_config(config) if config else RunConfig()
    _apply(cfg, overrides)
    if model is not None and config is None:
        cfg.model.options = {}
    cfg = RunConfig.from_dict(cfg.to_dict())
    task = task_for_config(cfg)
    cfg.task = task.name
    task.check(cfg)
    if cfg.model.name is not None:
        import medattn.models  # noqa: F401  (registers the models, so a bad name fails before any work)
        from medattn.errors import ConfigError
        from medattn.registry import MODELS

        if task.model_tag not in MODELS.get(cfg.model.name).tasks:
            names = ", ".join(MODELS.names(task.model_tag))
            raise ConfigError(f"model {cfg.model.name!r} does not fit {task.name}; models that do: {names}")
    return cfg, task


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
    time_limit: float = typer.Option(None, "--time-limit", help=_TIME_HELP),
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
    series: str = typer.Option(None, "--series", help=_SERIES_HELP),
    drop_bad_boxes: bool = typer.Option(None, "--drop-bad-boxes", help=_DROP_HELP),
    box_format: str = typer.Option(None, "--box-format", help=_FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=_SPACE_HELP),
    source_channels: str = typer.Option(None, "--source-channels", help=_CHANNELS_HELP.format("input", "0,2")),
    target_channels: str = typer.Option(None, "--target-channels", help=_CHANNELS_HELP.format("output", "1")),
    degrade: str = typer.Option(None, "--degrade", help=_DEGRADE_HELP),
    target_range: float = typer.Option(None, "--range", help=_RANGE_HELP),
    bag: str = typer.Option(None, "--bag", help=_BAG_HELP),
    clinical: str = typer.Option(None, "--clinical", help=_CLINICAL_HELP),
    clinical_columns: str = typer.Option(None, "--clinical-columns", help=_COLUMNS_HELP),
    clinical_fusion: str = typer.Option(None, "--clinical-fusion", help=_FUSION_HELP),
    clinical_dropout: float = typer.Option(None, "--clinical-dropout", help=_CLINICAL_DROPOUT_HELP),
    modalities: str = typer.Option(None, "--modalities", help=_MODALITIES_HELP),
    fusion: str = typer.Option(None, "--fusion", help=_MODALITY_FUSION_HELP),
    modality_dropout: float = typer.Option(None, "--modality-dropout", help=_DROPOUT_HELP),
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
            "data.targets": _targets(targets),
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
            "data.source_channels": _parse_size(source_channels, repeat=False),
            "data.target_channels": _parse_size(target_channels, repeat=False),
            "data.degrade": degrade,
            "data.target_range": target_range,
            "data.bag": bag,
            "data.clinical": clinical,
            "data.clinical_columns": _targets(clinical_columns),
            "data.clinical_fusion": clinical_fusion,
            "train.clinical_dropout": clinical_dropout,
            "data.modalities": _targets(modalities),
            "model.fusion": fusion,
            "train.modality_dropout": modality_dropout,
            "data.heads": _targets(heads),
            "train.head_weights": head_weights,
            "train.threshold": threshold,
            "data.synthetic": synthetic,
            "data.synthetic_ratio": synthetic_ratio,
            "train.device": device,
            "data.size": _parse_size(size),
            "data.patch": _parse_size(patch, repeat=False),
        }
        cfg, chosen = _configured(config, overrides, model=model)
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
    _emit(result, as_json, lambda r: print(chosen.summary(r)))


def _targets(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _parse_size(text: str | None, *, repeat: bool = True) -> list[int] | None:
    """Parse "64,64" -> [64, 64]; one number is repeated for both axes of an image, or kept as is (repeat=False)."""
    from medattn.errors import ConfigError

    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise ConfigError(
            f"{text!r}: expected integers such as 64 or 64,64 (--size, --patch, --source-channels, --target-channels)"
        ) from error
    return sizes * 2 if len(sizes) == 1 and repeat else sizes


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="a finished run directory, or a cross-validation directory (its ensemble)"),
    data: str = typer.Option(None, "--data", help="dataset to score (default: the run's training data)"),
    split: str = typer.Option("test", "--split"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    series: str = typer.Option(None, "--series", help=_SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=_SLICE_HELP),
    backend: str = typer.Option("torch", "--backend", help=_BACKEND_HELP),
    missing: str = typer.Option(None, "--missing", help=_MISSING_HELP),
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
        _emit(result, as_json, print_subsets if missing == ALL else task.print_report)
        return
    with reading(run, series=series, slice_axis=slice_axis, backend=backend):
        metrics = task.evaluate(run, data=data, split=split, tta=tta, **options)
        if backend != "torch":
            metrics["backend"] = backend
        elif data is None and not tta and not is_ensemble(run):  # a single run on its own data: its split's report
            metrics["report"] = str(write_report(run, split=split))
    _emit(metrics, as_json, task.print_report)


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
    _emit(result, as_json, task.print_predictions)


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
    _emit({"report": str(path)}, as_json, lambda p: print(f"report written to {p['report']}"))


@app.command()
def predict(
    run: Path = typer.Argument(..., help="a finished run directory, or a cross-validation directory (its ensemble)"),
    files: list[Path] = typer.Argument(..., help="DICOM files or series folders, NIfTI, PNG/JPEG"),
    tta: bool = typer.Option(False, "--tta", help="average over the flips used in training (test-time augmentation)"),
    out_dir: Path = typer.Option(
        None, "--out-dir", help="tasks that write files (masks): where (default RUN/predictions)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="tasks that write files: replace those already there"),
    series: str = typer.Option(None, "--series", help=_SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=_SLICE_HELP),
    backend: str = typer.Option("torch", "--backend", help=_BACKEND_HELP),
    missing: str = typer.Option(
        None, "--missing", help="runs trained with --modalities or --clinical: the inputs these files lack"
    ),
    clinical: str = typer.Option(None, "--clinical", help=_PREDICT_CLINICAL_HELP),
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

    absent = tuple(_targets(missing) or ())
    with reading(run, series=series, slice_axis=slice_axis, backend=backend, missing=absent, clinical=clinical):
        result = task.predict(run, files, tta=tta, out_dir=out_dir, overwrite=overwrite, series=series)
    _emit(result, as_json, task.print_predictions)


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
    series: str = typer.Option(None, "--series", help=_SERIES_HELP),
    slice_axis: int = typer.Option(None, "--slice-axis", help=_SLICE_HELP),
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
    _emit(result, as_json, print_explained)


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
    _emit(
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
    _emit(
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
    _emit(result, as_json, lambda r: None)


data_app = typer.Typer(no_args_is_help=True, help="Look at a dataset before training on it.")
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="a dataset of any task (see `medattn train --help`)"),
    task: str = typer.Option(None, "--task", help="the task (default: recognised from the data)"),
    labels: str = typer.Option(None, "--labels", help="class labels: binary | multiclass | multilabel | ordinal"),
    box_format: str = typer.Option(None, "--box-format", help=_FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=_SPACE_HELP),
    source_channels: str = typer.Option(None, "--source-channels", help=_CHANNELS_HELP.format("input", "0,2")),
    target_channels: str = typer.Option(None, "--target-channels", help=_CHANNELS_HELP.format("output", "1")),
    degrade: str = typer.Option(None, "--degrade", help=_DEGRADE_HELP),
    bag: str = typer.Option(None, "--bag", help=_BAG_HELP),
    heads: str = typer.Option(None, "--heads", help=HEADS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Counts per class (or label, or target), split and patient; sizes, spacing, intensities; leakage checks."""
    from medattn.config import RunConfig
    from medattn.progress import track
    from medattn.tasks import task_for_config
    from medattn.tasks.base import check_fields

    config = RunConfig(task=task)
    given = {"data.path": path, "data.labels": labels, "data.box_format": box_format, "data.box_space": box_space}
    given["data.source_channels"] = _parse_size(source_channels, repeat=False)
    given["data.target_channels"] = _parse_size(target_channels, repeat=False)
    given["data.degrade"] = degrade
    given["data.bag"] = bag
    given["data.heads"] = _targets(heads)
    _apply(config, given)
    config = RunConfig.from_dict(config.to_dict())
    chosen = task_for_config(config)
    check_fields(config, chosen)
    report = chosen.inspect(config, progress=lambda items: track(items, "reading the data"))
    _emit(report, as_json, chosen.print_inspect)


@data_app.command("boxes")
def data_boxes(
    masks: str = typer.Option(
        ...,
        "--masks",
        help="label masks: a folder with images/ and masks/, an MSD dataset.json, a CSV image,mask",
    ),
    out: Path = typer.Option(..., "--out", help="the box CSV to write: path,x1,y1,x2,y2,label[,patient_id][,split]"),
    min_size: int = typer.Option(1, "--min-size", help="pieces smaller than this many pixels (voxels) are dropped"),
    connectivity: str = typer.Option("faces", "--connectivity", help="faces (4- / 6-connected) | full (8 / 26)"),
    class_names: str = typer.Option(None, "--class-names", help="names of labels 1, 2, ... (default: the data's)"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Boxes around the connected pieces of every label of a segmentation set's masks: a box CSV to train on."""
    from medattn.tasks.detect.from_masks import write_mask_boxes

    names = _targets(class_names)
    summary = write_mask_boxes(
        masks, out, min_size=min_size, connectivity=connectivity, class_names=names, overwrite=force
    )
    _emit(
        summary,
        as_json,
        lambda r: print(
            f"{sum(r['boxes'].values())} boxes ({r['boxes']}) in {r['images']} images "
            f"({r['images_without_boxes']} without any) written to {r['out']}"
        ),
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
    drop_bad_boxes: bool = typer.Option(None, "--drop-bad-boxes", help=_DROP_HELP),
    box_format: str = typer.Option(None, "--box-format", help=_FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=_SPACE_HELP),
    bag: str = typer.Option(None, "--bag", help=_BAG_HELP),
    clinical: str = typer.Option(None, "--clinical", help=_CLINICAL_HELP),
    clinical_columns: str = typer.Option(None, "--clinical-columns", help=_COLUMNS_HELP),
    clinical_fusion: str = typer.Option(None, "--clinical-fusion", help=_FUSION_HELP),
    clinical_dropout: float = typer.Option(None, "--clinical-dropout", help=_CLINICAL_DROPOUT_HELP),
    modalities: str = typer.Option(None, "--modalities", help=_MODALITIES_HELP),
    fusion: str = typer.Option(None, "--fusion", help=_MODALITY_FUSION_HELP),
    modality_dropout: float = typer.Option(None, "--modality-dropout", help=_DROPOUT_HELP),
    model: str = typer.Option(None, "--model"),
    epochs: int = typer.Option(None, "--epochs"),
    time_limit: float = typer.Option(None, "--time-limit", help=_TIME_HELP + " (per fold)"),
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
        _emit(result, as_json, print_cv)
        return
    if data is None and config is None:
        raise ConfigError("--data is required (or data.path in --config)")
    overrides = {
        "task": task,
        "data.path": data,
        "data.labels": labels,
        "data.targets": _targets(targets),
        "data.modality": modality,
        "data.drop_bad_boxes": drop_bad_boxes,
        "data.box_format": box_format,
        "data.box_space": box_space,
        "data.bag": bag,
        "data.clinical": clinical,
        "data.clinical_columns": _targets(clinical_columns),
        "data.clinical_fusion": clinical_fusion,
        "train.clinical_dropout": clinical_dropout,
        "data.modalities": _targets(modalities),
        "model.fusion": fusion,
        "train.modality_dropout": modality_dropout,
        "model.name": model,
        "train.epochs": epochs,
        "train.time_limit": time_limit,
        "train.seed": seed,
        "train.batch_size": batch_size,
        "train.device": device,
        "data.size": _parse_size(size),
        "data.patch": _parse_size(patch, repeat=False),
    }
    cfg, _ = _configured(config, overrides, model=model)
    result = run_cv(RunConfig.from_dict(cfg.to_dict()), out, settings=settings, resume=False, force=force)
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
