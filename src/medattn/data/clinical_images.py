"""Clinical vectors beside images (classification, regression) and cases (segmentation): each gets its patient's.

Training fits the encoding on the training patients (data/clinical.py) and joins every image or case of train and
val on its `patient_id`; a patient the table does not list gets the all-unknown vector and is counted in the run's notes
and card. Evaluation rebuilds each member's vectors from its card; predict looks files up in `--clinical TABLE`
(engine/inputs.py's CLINICAL). Clinical dropout replaces whole vectors by the all-unknown one in training, so the
model keeps an image-only path for `--missing clinical` and for predict without a table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from medattn.data.clinical import ClinicalSpec, fit_clinical, read_table
from medattn.errors import DataError

# A training image's vector is all-unknown with this chance by default: enough for the image-only path to learn
# (a fifth of every batch), little enough that the clinical path still sees most of the data.
DEFAULT_DROPOUT = 0.2
MISSING_NAME = "clinical"  # the input `--missing clinical` leaves out
# The optional config fields of clinical values beside the images, which every task that takes them lists.
CLINICAL_FIELDS = frozenset(
    {"data.clinical", "data.clinical_columns", "data.clinical_fusion", "train.clinical_dropout"}
)


def fit_images(config, where: str, train, val) -> tuple[ClinicalSpec, dict]:
    """(the encoding fitted on the training patients, {"absent_patients": {split: count}, "notes": [...]}), with
    train.clinical and val.clinical set."""
    spec, vectors, info = fit_patients(config, where, {"train": train.patient_ids, "val": val.patient_ids})
    train.clinical, val.clinical = vectors["train"], vectors["val"]
    return spec, info


def fit_patients(config, where: str, patients: dict[str, list[str] | None]) -> tuple[ClinicalSpec, dict, dict]:
    """(the encoding fitted on patients["train"], {split: (N, F) vectors}, {"absent_patients": {split: count},
    "notes": [...]}) for each split's list of patient ids (one per image or case)."""
    import torch

    data = config.data
    ids = {name: patients_of(given, where=f"{where} [{name}]") for name, given in patients.items()}
    spec, table = fit_clinical(data.clinical, data.clinical_columns, ids["train"])
    vectors, absent, notes = {}, {}, []
    for name, given in ids.items():
        vectors[name] = torch.from_numpy(spec.vectors(table, given)).float()
        missing = sorted({p for p in given if p not in table})
        absent[name] = len(missing)
        if missing:
            notes.append(
                f"{len(missing)} {name} patient(s) not in the clinical table {data.clinical} (e.g. {missing[0]}): "
                f"their clinical values count as unknown"
            )
    return spec, vectors, {"absent_patients": absent, "notes": notes}


def clinical_options(config, spec: ClinicalSpec | None, *, fusion: str) -> None:
    """With clinical data, the model options that wrap the model to take it (models/clinical.py: the vector's
    width, `fusion` unless data.clinical_fusion says, the all-unknown vector) and clinical dropout's default."""
    if spec is None:
        return
    tabular = {
        "width": spec.width,
        "fusion": config.data.clinical_fusion or fusion,
        "missing": spec.vector(None).tolist(),
    }
    config.model.options = {**config.model.options, "tabular": tabular}
    if config.train.clinical_dropout is None:
        config.train.clinical_dropout = DEFAULT_DROPOUT


def clinical_card(spec: ClinicalSpec | None, join: dict | None) -> dict | None:
    """The card's `clinical`: the encoding evaluate and predict rebuild, and the patients the table lacked."""
    return None if spec is None else {**spec.to_card(), "absent_patients": join["absent_patients"]}


def member_model(member, patient: str | None, *, where: str):
    """The member's network for one case or file of `patient`: bound to that patient's vector when the run takes
    clinical values (models/clinical.py's BoundClinical), else the network itself (also under --missing clinical,
    where the all-unknown vector is the image-only path)."""
    vectors = member_vectors(member.card, [patient], where=where)
    if vectors is None:
        return member.model
    from medattn.models.clinical import BoundClinical

    return BoundClinical(member.model, vectors[0])


def clinical_dropout(train_set, config, missing: list[float], *, seed: int):
    """The dropout `config.train.clinical_dropout` asks for (None when 0 or unset), its generator registered with
    the train set's checkpointed and per-rank streams."""
    if not config.train.clinical_dropout:
        return None
    dropout = ClinicalDropout(missing, config.train.clinical_dropout, seed=seed)
    train_set.generators["clinical_dropout"] = dropout.generator
    train_set.rank_generators.append(dropout.generator)
    return dropout


def patients_of(ids: list[str] | None, *, where: str) -> list[str]:
    """The patient ids of a split, or an error naming `where` when it has none to join on."""
    if ids is None or not any(ids):
        raise DataError(
            f"{where}: clinical values join on patient_id, but the images have none (a CSV needs a patient_id "
            f"column, a class-folder tree a manifest.csv with file and patient_id)"
        )
    return list(ids)


def left_out() -> bool:
    """Whether `--missing clinical` leaves the clinical values out (evaluate and predict score the image alone)."""
    from medattn.engine.inputs import MISSING

    return MISSING_NAME in MISSING.get()


def member_vectors(card: dict, patients: list[str | None] | None, *, where: str):
    """(N, F) float32 vectors of `patients` (None in the list: a patient not known) as the run's card encodes
    them, from predict's `--clinical` table or the table training read; None when the run takes no clinical
    values or `--missing clinical` leaves them out. Data without patient ids (None) is an error naming `where`."""
    from medattn.engine.inputs import CLINICAL

    section = card.get("clinical")
    if not section or left_out():
        return None
    import torch

    patients = patients_of(patients, where=where) if patients is None else patients
    spec = ClinicalSpec.from_card(section)
    path = CLINICAL.get() or spec.path
    table = _table(path)
    if len(set(patients) - {None}) > 1 and not any(p in table for p in patients):  # the wrong table, likely
        raise DataError(f"{where}: none of its patients is in the clinical table {path}")
    return torch.from_numpy(spec.vectors(table, patients)).float()


def _table(path: str | Path) -> dict:
    """The table at `path`, read once per version of the file (segmentation asks per case, predict per file)."""
    return _read_once(str(path), Path(path).stat().st_mtime_ns if Path(path).is_file() else 0)


@lru_cache(maxsize=4)
def _read_once(path: str, version: int) -> dict:
    return read_table(path)


def file_patient(file: str | Path) -> tuple[str | None, dict]:
    """(patient, what predict reports of it) for an image file: with `--clinical`, the longest patient id of the
    table found in the file's path (a folder or a file name that starts with it), reported as attention MIL's
    predict does ({"clinical": "TABLE row ID"}, or every value unknown); without a table (None, {}): the
    image-only path."""
    from medattn.engine.inputs import CLINICAL

    path = CLINICAL.get()
    if path is None:
        return None, {}
    file = Path(file).resolve()
    folders = set(file.parent.parts) | ({file.name} if file.is_dir() else set())  # a DICOM series folder
    found = [p for p in _table(path) if p and (p in folders or file.name.startswith(p))]
    if not found:
        return None, {"clinical": f"no patient_id of {path} in the file's path: every value unknown"}
    patient = max(found, key=len)
    return patient, {"clinical": f"{path} row {patient}"}


class ClinicalDropout:
    """Each row of a clinical batch (B, F) replaced by the all-unknown vector with probability p."""

    def __init__(self, missing, p: float, *, seed: int) -> None:
        import torch

        self.missing, self.p = torch.as_tensor(missing, dtype=torch.float32), p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, clinical):
        import torch

        drop = torch.rand(len(clinical), generator=self.generator) < self.p  # (B,)
        return torch.where(drop[:, None], self.missing.to(clinical.dtype), clinical)
