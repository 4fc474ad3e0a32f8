"""What the command modules share: help texts and the parsing of flags into a run config.

cli.py holds the app and the commands that train, evaluate and predict; data_commands.py, tune_commands.py and
deploy_commands.py register their groups on it. Each imports its help texts and helpers from here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SERIES_HELP = "DICOM folders holding several series: the one to read (SeriesInstanceUID or SeriesDescription)"
TIME_HELP = "minutes of training, validation included: the first epoch is timed and the epochs that fit are kept"
DROP_HELP = "box data: drop bad boxes (no area, outside the image, unknown class) with a count instead of failing"
FORMAT_HELP = "MONAI box JSON: how its boxes are written, xyzxyz (corners) | cccwhd (centre, size)"
SPACE_HELP = "MONAI box JSON: voxel | world (RAS+ mm) | world_lps (LPS mm, as ITK writes)"
CHANNELS_HELP = "one multi-channel set translated: the {} channels, e.g. {}"
DEGRADE_HELP = "pairs from single images: noise=0.05 (denoising) or downsample=2 (super-resolution)"
RANGE_HELP = "the data range PSNR and SSIM use (default: the training targets' max - min as stored)"
SLICE_HELP = "2D models on volumes: the axis (0, 1, 2 of the stored array) to cut slices along (default: the card's)"
BAG_HELP = "bag-labelled CSV: the column whose rows form one bag with one label (e.g. patient_id: a patient's slices)"
CLINICAL_HELP = "a per-patient CSV (patient_id and clinical columns) whose values join the image features"
COLUMNS_HELP = "--clinical: the columns to use, e.g. age,gender (name:numeric or name:categorical to decide the kind)"
FUSION_HELP = "--clinical: how the values join the image features: concat | film (default concat)"
CLINICAL_DROPOUT_HELP = (
    "--clinical: chance a training image's (or bag's) clinical vector is all-unknown (default 0.2; bags: 0)"
)
MISSING_HELP = (
    "runs trained with --modalities or --clinical: leave these out (e.g. flair, flair,t1 or clinical), or "
    "all-subsets: every subset"
)
PREDICT_CLINICAL_HELP = (
    "runs trained with --clinical: the per-patient table; each file's patient is the longest patient_id found in "
    "its path (without it: the image-only path)"
)
MODALITIES_HELP = (
    "names of the input modalities, e.g. t1,flair,t1c: the channels split evenly among them, in order; auto: as "
    "the data names its channels (MSD dataset.json modality, nnU-Net case_0000 files)"
)
MODALITY_FUSION_HELP = "--modalities: early | late | hemis | cross_attention (default early)"
DROPOUT_HELP = "--modalities: chance each modality of a training image is left out (at least one kept)"
BACKEND_HELP = "torch | onnx | onnx-int8: the network in PyTorch, or exported (medattn export) in ONNX Runtime"


def emit(payload: dict, as_json: bool, human) -> None:
    """One JSON object on stdout with --json; a readable summary otherwise."""
    from medattn.runs import finite

    if as_json:
        sys.stdout.write(json.dumps(finite(payload), allow_nan=False, default=float) + "\n")
    else:
        human(payload)


def task_names() -> str:
    import medattn.tasks  # noqa: F401  (registers the tasks)
    from medattn.registry import TASKS

    return " | ".join(TASKS.names())


def apply(cfg, overrides: dict) -> None:
    """Set each given flag's config field; the task checks later that it means something to it."""
    for key, value in overrides.items():
        if value is None:
            continue
        if "." not in key:
            setattr(cfg, key, value)
        else:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)


def configured(config: Path | None, overrides: dict, *, model: str | None):
    """The run config from --config and the flags, its task found (given, or recognised from the data) and
    every flag checked against it before any data is read."""
    from medattn.config import RunConfig, load_config
    from medattn.tasks import task_for_config

    cfg = load_config(config) if config else RunConfig()
    apply(cfg, overrides)
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


def comma_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def parse_size(text: str | None, *, repeat: bool = True) -> list[int] | None:
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
