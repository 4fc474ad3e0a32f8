"""The README cannot drift from the code: every `medattn` line of its bash blocks runs here, in order, and its
YAML config parses. A block that cannot run here is marked `<!-- illustrative: reason -->` just above it.

Each line runs as written, in a work folder beside `../shared` (so the README's real paths resolve), with the
README's placeholder files (scan.dcm, ages.csv, em_folder, ...) made as tiny phantoms and a few rewrites to keep
it short: `train` and `tune cv` get `--epochs 1`, `tune cv` two folds, `tune grid` two trials, and the
Hippocampus dataset.json lists 12 of its real cases.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.matrix_sets import classification_set, item, regression_set, segmentation_set, write_dicom
from tests.run_cli import invoke, run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL_LINES = {". .venv/bin/activate"}  # lines of a runnable block that set up the shell, not medattn
BLOCK = re.compile(r"(?:<!-- illustrative: (?P<why>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str | None]]:
    """(language, body, reason it is illustrative or None) of every fenced block, in order."""
    return [(m["lang"], m["body"], m["why"]) for m in BLOCK.finditer(README.read_text())]


def commands(body: str) -> list[str]:
    """The block's lines, comments dropped and continuations joined."""
    joined = body.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _lgg(work: Path, shared: Path) -> Path:
    """The LGG folder's first 4 patients (images/, masks/, manifest.csv), for `data boxes` and short runs."""
    import csv

    source = shared / "lgg_mri"
    with (source / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    patients = sorted({r["patient_id"] for r in rows})[:4]
    rows = [r for r in rows if r["patient_id"] in patients]
    target = work / "lgg4"
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True)
        for row in rows:
            (target / folder / row["file"]).symlink_to(source / folder / row["file"])
    lines = ["file,patient_id", *(f"{r['file']},{r['patient_id']}" for r in rows)]
    (target / "manifest.csv").write_text("\n".join(lines) + "\n")
    return target


def _hippocampus(work: Path, shared: Path) -> Path:
    """dataset.json listing 12 real Hippocampus cases (absolute paths), for a one-epoch run."""
    source = json.loads((shared / "msd_hippocampus" / "dataset.json").read_text())
    root = shared / "msd_hippocampus"
    source["training"] = [
        {key: str((root / value).resolve()) for key, value in case.items()} for case in source["training"][:12]
    ]
    target = work / "hippocampus12" / "dataset.json"
    target.parent.mkdir()
    target.write_text(json.dumps(source))
    return target


def _lgg_csv(work: Path, shared: Path) -> None:
    """lgg.csv: 6 real lgg_mri patients' slices, labelled by whether the tumour mask has pixels, with the mask."""
    import csv

    root = shared / "lgg_mri"
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    patients = sorted({row["patient_id"] for row in rows})[:6]
    lines = ["path,label,patient_id,mask"]
    for row in rows:
        if row["patient_id"] in patients and int(row["slice_number"]) % 2 == 0:
            label = "tumour" if int(row["mask_pixels"]) > 0 else "none"
            image, mask = (root / "images" / row["file"]).resolve(), (root / "masks" / row["file"]).resolve()
            lines.append(f"{image},{label},{row['patient_id']},{mask}")
    (work / "lgg.csv").write_text("\n".join(lines) + "\n")


def _grade(work: Path, shared: Path) -> None:
    """grade.csv: 8 real lgg_mri patients' slices (every third), each labelled with its patient's tumour grade
    from clinical.csv, and TCGA_CS_4942_19970222/, one patient's slices as a bag folder."""
    import csv

    root = shared / "lgg_mri"
    grades = {r["patient_id"]: r["neoplasm_histologic_grade"] for r in csv.DictReader((root / "clinical.csv").open())}
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    patients = [p for p in sorted(grades) if grades[p] == "1"][:4] + [p for p in sorted(grades) if grades[p] == "2"][:4]
    lines = ["path,label,patient_id"]
    lines += [
        f"{(root / 'images' / r['file']).resolve()},{grades[r['patient_id']]},{r['patient_id']}"
        for r in rows
        if r["patient_id"] in patients and int(r["slice_number"]) % 3 == 0
    ]
    (work / "grade.csv").write_text("\n".join(lines) + "\n")
    bag = work / "TCGA_CS_4942_19970222"
    bag.mkdir()
    for r in rows[:6]:
        (bag / r["file"]).symlink_to(root / "images" / r["file"])


@pytest.fixture(scope="module")
def work(tmp_path_factory, shared_data: Path) -> dict:
    """A work folder with ../shared beside it, the README's placeholder files, and runs/pneumonia."""
    base = tmp_path_factory.mktemp("readme")
    (base / "shared").symlink_to(shared_data.parent)
    work = base / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    rng = np.random.default_rng(0)
    write_dicom(work / "scan", item(1, 2, "int16", present=True, rng=rng)[0][0], modality="ct")
    for name in ("series_folder", "dicom_series"):
        write_dicom(work / name, item(1, 3, "int16", present=True, rng=rng)[0][0], modality="ct")
    from PIL import Image

    Image.fromarray(item(1, 2, "uint8", present=True, rng=rng)[0][0]).save(work / "image.png")
    Image.fromarray(item(2, 2, "uint8", present=True, rng=rng)[0][0]).save(work / "scan.png")
    _lgg_csv(work, shared_data)
    _grade(work, shared_data)
    hippocampus = sorted((shared_data / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[0]
    shutil.copy(hippocampus, work / "case.nii.gz")
    for name in ("folder_or_manifest", "skewed", "scans", "manifest"):
        made = classification_set(work / f"_{name}", "csv", 2, "uint8", "auto")
        (work / f"{name}.csv").write_text(made.read_text().replace("images/", f"_{name}/images/"))
    ages = regression_set(work / "_ages", "csv", 2, "uint8", "auto")
    (work / "ages.csv").write_text(
        ages.read_text().replace("path,side", "path,age").replace("images/", "_ages/images/")
    )
    segmentation_set(work / "_em", "folders", 2, "uint8", "auto")
    (work / "em_folder").symlink_to(work / "_em" / "set")
    from medattn.data.phantom import save_medmnist_npz
    from medattn.tasks.regress.phantom import save_burden_npz

    save_burden_npz(work / "burden.npz", n_train=24, n_val=8, n_test=8, size=16)
    from tests.detection_sets import coco_set, monai_set, voc_set, yolo_set

    voc_set(work / "voc_folder")
    yolo_set(work / "yolo_folder")
    shutil.copy(coco_set(work / "_coco"), work / "coco.json")
    (work / "images").symlink_to(work / "_coco" / "images")  # COCO names its images relative to the JSON
    shutil.copy(monai_set(work / "_nodules", box_format="cccwhd", box_space="world_lps"), work / "nodules.json")
    (work / "nodules.json").write_text((work / "nodules.json").read_text().replace("images/", "_nodules/images/"))
    pneumonia = save_medmnist_npz(work / "_pneumonia.npz", n_train=32, n_val=8, n_test=8)
    run("train", "--data", pneumonia, "--out", work / "runs" / "pneumonia", "--epochs", "1")
    substitutions = {
        "scan.dcm": "scan.dcm",
        "breast.npz": "../shared/data/medmnist/breastmnist.npz",
        "../shared/data/msd_hippocampus/dataset.json": str(_hippocampus(work, shared_data)),
        "../shared/data/lgg_mri": str(_lgg(work, shared_data)),
    }
    return {"path": work, "substitutions": substitutions}


def _rewritten(args: list[str], substitutions: dict) -> list[str]:
    """The README's arguments with its placeholders resolved and the run kept short (see the module docstring)."""
    args = [substitutions.get(a, a) for a in args]
    command = args[:2] if args[0] == "tune" else args[:1]

    def setting(flag: str, value: str) -> None:
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args.extend([flag, value])

    if command == ["train"] and "--resume" not in args:
        setting("--epochs", "1")
    if command == ["tune", "cv"]:
        setting("--epochs", "1")
        setting("--folds", "2")
    if command == ["tune", "grid"]:
        setting("--trials", "2")
        setting("--folds", "2")
    return args


RUNNABLE = [(i, body) for i, (lang, body, why) in enumerate(blocks()) if lang == "bash" and why is None]


def test_every_bash_block_runs_or_says_why_not():
    illustrative = [why for lang, _, why in blocks() if lang == "bash" and why is not None]
    assert all(len(why.split()) >= 3 for why in illustrative), "an illustrative block gives its reason"
    assert len(RUNNABLE) >= 4
    for _, body in RUNNABLE:
        for line in commands(body):
            assert line.startswith("medattn ") or line in SHELL_LINES, f"README line no test runs: {line!r}"


@pytest.mark.slow
@pytest.mark.parametrize(("index", "body"), RUNNABLE, ids=[f"block{i}" for i, _ in RUNNABLE])
def test_readme_block_runs(index: int, body: str, work: dict, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(work["path"])
    ran = 0
    for line in commands(body):
        if line in SHELL_LINES:
            continue
        args = _rewritten(shlex.split(line)[1:], work["substitutions"])
        result = invoke(*args) if "--json" in args else run(*args)
        assert result is not None
        ran += 1
    assert ran


def test_readme_yaml_config_parses():
    import yaml

    from medattn.config import RunConfig

    configs = [body for lang, body, _ in blocks() if lang == "yaml"]
    assert configs
    for body in configs:
        RunConfig.from_dict(yaml.safe_load(body))
