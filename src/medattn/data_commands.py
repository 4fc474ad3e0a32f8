"""The `data` commands (`inspect`, `boxes`): look at a dataset before training on it, registered on cli.py's app."""

from __future__ import annotations

from pathlib import Path

import typer

from medattn.cli import app
from medattn.cli_common import (
    BAG_HELP,
    CHANNELS_HELP,
    DEGRADE_HELP,
    FORMAT_HELP,
    SPACE_HELP,
    apply,
    comma_list,
    emit,
    parse_size,
)
from medattn.config import HEADS_HELP

data_app = typer.Typer(no_args_is_help=True, help="Look at a dataset before training on it.")
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="a dataset of any task (see `medattn train --help`)"),
    task: str = typer.Option(None, "--task", help="the task (default: recognised from the data)"),
    labels: str = typer.Option(None, "--labels", help="class labels: binary | multiclass | multilabel | ordinal"),
    box_format: str = typer.Option(None, "--box-format", help=FORMAT_HELP),
    box_space: str = typer.Option(None, "--box-space", help=SPACE_HELP),
    source_channels: str = typer.Option(None, "--source-channels", help=CHANNELS_HELP.format("input", "0,2")),
    target_channels: str = typer.Option(None, "--target-channels", help=CHANNELS_HELP.format("output", "1")),
    degrade: str = typer.Option(None, "--degrade", help=DEGRADE_HELP),
    bag: str = typer.Option(None, "--bag", help=BAG_HELP),
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
    given["data.source_channels"] = parse_size(source_channels, repeat=False)
    given["data.target_channels"] = parse_size(target_channels, repeat=False)
    given["data.degrade"] = degrade
    given["data.bag"] = bag
    given["data.heads"] = comma_list(heads)
    apply(config, given)
    config = RunConfig.from_dict(config.to_dict())
    chosen = task_for_config(config)
    check_fields(config, chosen)
    report = chosen.inspect(config, progress=lambda items: track(items, "reading the data"))
    emit(report, as_json, chosen.print_inspect)


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

    names = comma_list(class_names)
    summary = write_mask_boxes(
        masks, out, min_size=min_size, connectivity=connectivity, class_names=names, overwrite=force
    )
    emit(
        summary,
        as_json,
        lambda r: print(
            f"{sum(r['boxes'].values())} boxes ({r['boxes']}) in {r['images']} images "
            f"({r['images_without_boxes']} without any) written to {r['out']}"
        ),
    )
