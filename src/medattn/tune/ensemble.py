"""Several finished runs as one predictor: the mean of their probabilities.

A cross-validation directory holds ensemble.json, listing its fold runs (relative paths, so the directory
can be moved). `evaluate` and `predict` accept it where they accept a run: each member preprocesses with its
own card (its own standardisation and input size), and the probabilities are averaged. A plain run directory
loads as an ensemble of one, so the commands have a single code path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medattn.engine.loaded import LoadedRun, load_run
from medattn.errors import RunDirError
from medattn.runs import atomic_write_json, read_json

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class Ensemble:
    path: Path
    members: list[LoadedRun]
    threshold: float | None  # binary / multilabel decision threshold; None = argmax
    threshold_rule: str

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def labels(self) -> str | None:
        return self.members[0].labels

    @property
    def class_names(self) -> list[str]:
        return self.members[0].card["class_names"]

    @property
    def config(self):
        return self.members[0].config


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def write_ensemble(out: Path, runs: list[Path], *, note: str) -> dict:
    """Write out/ensemble.json listing `runs` (stored relative to `out` when inside it)."""
    members = [str(run.relative_to(out)) if run.is_relative_to(out) else str(run) for run in runs]
    payload = {"kind": "medattn-ensemble", "combine": "mean of member probabilities", "members": members}
    payload["note"] = note
    atomic_write_json(out / ENSEMBLE_FILE, payload)
    return payload


def member_paths(path: Path) -> list[Path]:
    """The run directories of the ensemble at `path`: its listed members, or `path` itself for a plain run."""
    if not is_ensemble(path) and (path / "cv-plan.json").is_file():
        raise RunDirError(f"{path} is an unfinished cross-validation: medattn tune cv --out {path} --resume")
    if not is_ensemble(path):
        return [path]
    listed = read_json(path / ENSEMBLE_FILE).get("members")
    if not isinstance(listed, list) or not listed:
        raise RunDirError(f"{path / ENSEMBLE_FILE}: expected a non-empty list under 'members'")
    return [path / member for member in listed]


def load_ensemble(path: str | Path, *, device=None) -> Ensemble:
    """The runs listed in path/ensemble.json, or the single run at `path`."""
    path = Path(path)
    members = [load_run(member, device=device) for member in member_paths(path)]
    if not is_ensemble(path):
        run = members[0]
        return Ensemble(path, [run], run.card.get("threshold"), run.card.get("threshold_rule", "as trained"))
    first = members[0]
    for run in members[1:]:
        for key in ("task", "class_names"):
            if run.card.get(key) != first.card.get(key):  # tasks without classes have no class_names
                raise RunDirError(
                    f"{path / ENSEMBLE_FILE}: members disagree on {key}: "
                    f"{first.path} has {first.card.get(key)}, {run.path} has {run.card.get(key)}"
                )
    threshold, rule = ensemble_threshold([run.card for run in members])
    return Ensemble(path, members, threshold, rule)


def ensemble_threshold(cards: list[dict]) -> tuple[float | None, str]:
    """Members that agree on their threshold rule share it (the mean of their values); otherwise 0.5.

    A threshold tuned on one fold's validation split belongs to that member's probabilities; averaging them is
    only meaningful when every member tuned the same way. None (multi-class) means argmax.
    """
    values = [card.get("threshold") for card in cards]
    rules = {card.get("threshold_rule") for card in cards}
    if any(value is None for value in values):
        return None, "argmax"
    if len(rules) == 1:
        mean = sum(values) / len(values)
        rule = rules.pop() or "as trained"
        return mean, rule if len(cards) == 1 else f"mean over {len(cards)} members of: {rule}"
    return 0.5, "fixed 0.5 (the members tuned their thresholds differently)"


def member_inputs(ensemble: Ensemble, source, split: str, *, progress=iter) -> Iterator[tuple]:
    """(member, Prepared) for every member: the split prepared as that member was trained.

    Images are read once per distinct (intensity mode, input size); members differ only in the standardisation
    fitted on their own training folds, which is applied here.
    """
    from medattn.data.tensors import Prepared, to_unit_tensor
    from medattn.errors import DataError

    if split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    data = source.splits[split]
    from medattn.engine.backend import uses_torch

    if uses_torch():
        import torch

        labels, to_unit = torch.from_numpy(data.labels), to_unit_tensor
    else:  # the ONNX backends: arrays, prepared without torch
        from medattn.engine.numeric import to_unit_array

        labels, to_unit = data.labels, to_unit_array
    cache: dict[tuple, object] = {}
    for run in ensemble.members:
        intensity, size = run.intensity, run.spec.size
        key = (intensity.mode, intensity.scale, tuple(intensity.window), tuple(size or ()))
        if key not in cache:
            where = f"{source.path} [{split}]"
            cache[key] = to_unit(data, intensity, size, where=where, progress=progress)
        x = (cache[key] - intensity.mean) / intensity.std  # (N, C, *spatial)
        x = x.contiguous() if uses_torch() else np.ascontiguousarray(x, dtype=np.float32)
        prepared = Prepared(x=x, y=labels, patient_ids=data.patient_ids)
        if run.card.get("clinical"):  # each image's patient's vector, as this member encodes it
            from medattn.data.clinical_images import member_vectors

            prepared.clinical = member_vectors(run.card, data.patient_ids, where=f"{source.path} [{split}]")
        yield run, prepared


def volume_outputs(
    ensemble: Ensemble, image, meta, predict, *, where: str, patient: str | None = None
) -> tuple[int | None, object]:
    """(slice axis or None, outputs (S, K)) for one image as read: the mean over members of `predict(member, x)`,
    each member preparing the image with its own card (a 2D member given a volume predicts its S slices); a
    member trained with clinical values gets `patient`'s vector beside x (None: every value unknown)."""
    from medattn.data.clinical_images import member_vectors

    outputs, axis = [], None
    for member in ensemble.members:
        axis, x = member.spec.batch(image, meta, where=where)  # (1 or S, C, *spatial)
        vectors = member_vectors(member.card, [patient] * len(x), where=where)  # (1 or S, F) or None
        outputs.append(predict(member, x if vectors is None else (x, vectors)))
    return axis, np.mean(outputs, axis=0)


def split_outputs(ensemble: Ensemble, source, split: str, predict, *, progress=iter):
    """(outputs (N, K), labels) for a split: the mean over members of `predict(member, x)`.

    A split of volumes given to 2D members is predicted slice by slice, one volume at a time, and each volume's
    output is the mean over its slices (what `predict` reports for a volume); otherwise the split is prepared
    once per member, as trained.
    """

    from medattn.errors import DataError

    if split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    data = source.splits[split]
    first = data.image(0)[0] if len(data) else None
    if first is None or not ensemble.members[0].spec.is_volume_for_slices(first):
        outputs = [
            predict(member, prepared.inputs)
            for member, prepared in member_inputs(ensemble, source, split, progress=progress)
        ]
        return np.mean(outputs, axis=0), data.labels
    rows = []
    for index in progress(range(len(data))):
        image, meta, where = data.image(index)
        patient = data.patient_ids[index] if data.patient_ids is not None else None
        where = f"{source.path} [{split}] {where}"
        rows.append(volume_outputs(ensemble, image, meta, predict, where=where, patient=patient)[1].mean(axis=0))
    return np.stack(rows), data.labels
