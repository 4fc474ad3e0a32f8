"""What an explanation of a segmenter explains: the sum of one class's logits over a region (the predicted
region, or a given mask), and the cases of a split to explain, with their masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def region_target(card: dict, output, given: str | None, mask):
    import torch

    from medattn.explain.target import Target, pick_index

    names = card["class_names"]
    predicted = output[0].argmax(dim=0)  # (*S)
    counts = torch.bincount(predicted.flatten(), minlength=len(names))
    default = int(counts[1:].argmax()) + 1 if len(names) > 1 else 0  # the largest predicted foreground class
    index = pick_index(names, given, default=default, where="the run")
    if mask is not None:
        region, how = torch.as_tensor(np.asarray(mask) == index, dtype=torch.float32), "given mask"
    else:
        region, how = (predicted == index).float(), "predicted region"
    title = f"{names[index]}: {int(counts[index])} voxels predicted; explained over the {how}"
    return Target(index, names[index], title, "softmax", region)


def segment_cases(run_dir: Path, *, data: str | None, split: str):
    from medattn.engine.loaded import load_run
    from medattn.errors import DataError
    from medattn.explain.case import ExplainCase
    from medattn.tasks.segment.cases import read_case
    from medattn.tasks.segment.data import open_split
    from medattn.tasks.segment.sources import open_segmentation

    run = load_run(run_dir)
    config = run.config
    path = data or config.data.path
    own = Path(path).resolve() == Path(config.data.path).resolve()
    source = open_split(config) if own else open_segmentation(path)
    if split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    binary_255 = bool(run.card["input"].get("binary_255", False))
    for case in source.splits[split]:
        item = read_case(case, binary_255=binary_255)
        labelled = int((item.mask > 0).sum())
        yield ExplainCase(case.name, item.image, item.meta, f"{labelled} labelled voxels", mask=item.mask)
