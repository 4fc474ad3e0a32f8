"""What an explanation of a classifier explains (a class's logit), and the images of a split to explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def class_target(card: dict, output, given: str | None):
    from medattn.explain.target import Target, pick_index

    names, labels = card["class_names"], card.get("labels") or card["task"]
    squash = "sigmoid" if labels == "multilabel" else "softmax"
    probs = (output.sigmoid() if squash == "sigmoid" else output.softmax(dim=1))[0].tolist()
    threshold = card.get("threshold")
    predicted = int(probs[1] > threshold) if labels == "binary" and threshold is not None else int(np.argmax(probs))
    index = pick_index(names, given, default=predicted, where="the run")
    title = f"predicted {names[predicted]} ({probs[predicted]:.2f})"
    if index != predicted:
        title += f"; explained: {names[index]} ({probs[index]:.2f})"
    return Target(index, names[index], title, squash)


def class_cases(task, run_dir: Path, *, data: str | None, split: str):
    from medattn.engine.loaded import load_run
    from medattn.tasks.classify.report import open_like_training

    run = load_run(run_dir)
    source, _ = open_like_training(run, data)
    names, labels = run.card["class_names"], source.splits.get(split)

    def truth(i):
        label = labels.labels[i]
        if np.ndim(label):  # multi-label
            return "true " + (";".join(n for n, v in zip(names, label, strict=True) if v) or "none"), None
        return f"true {names[int(label)]}", int(label)

    return task.split_cases(source, split, truth)
