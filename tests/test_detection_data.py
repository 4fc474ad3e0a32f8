"""Detection data: every layout opens to the same boxes in pixel coordinates, bad boxes are errors naming the file
(or dropped with a count), `data boxes` turns masks into a box CSV, and `data inspect` describes the boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.detection_sets import CLASSES, coco_set, csv_set, monai_set, objects, voc_set, yolo_set
from tests.run_cli import invoke

from medattn.errors import ConfigError, DataError
from medattn.tasks import task_for_data
from medattn.tasks.detect.sources import open_detection


def _boxes_by_image(source) -> dict[str, tuple[list, list]]:
    items = [item for split in source.splits.values() for item in split]
    return {Path(i.image).stem: (np.round(i.boxes, 3).tolist(), i.labels.tolist()) for i in items}


def _truth(n: int, dims: int = 2) -> list[tuple[list, list]]:
    return [(b.tolist(), y.tolist()) for _, b, y in (objects(i, dims) for i in range(n))]


@pytest.mark.parametrize("layout", ["voc", "coco", "yolo", "csv"])
def test_every_2d_layout_opens_to_the_same_pixel_boxes(layout, tmp_path):
    made = {"voc": voc_set, "coco": coco_set, "yolo": yolo_set, "csv": csv_set}[layout](tmp_path / "set", n=12)
    assert task_for_data(made).name == "detection"
    source = open_detection(made)
    assert source.class_names == list(CLASSES)
    found = sorted(_boxes_by_image(source).items())
    assert [boxes_labels for _, boxes_labels in found] == _truth(12)
    assert any(not boxes for _, (boxes, _) in found), "an image without boxes is a negative image"


@pytest.mark.parametrize(
    ("box_format", "box_space"), [("cccwhd", "world"), ("xyzxyz", "world_lps"), ("xyzxyz", "voxel")]
)
def test_monai_json_boxes_become_voxel_corners(box_format, box_space, tmp_path):
    made = monai_set(tmp_path / "set", box_format=box_format, box_space=box_space)
    assert task_for_data(made).name == "detection"
    source = open_detection(made, box_format=box_format, box_space=box_space)
    assert set(source.splits) == {"train", "val"}
    assert [b for _, (b, _) in sorted(_boxes_by_image(source).items())] == [t[0] for t in _truth(12, 3)]
    with pytest.raises(ConfigError, match="state --box-format"):
        open_detection(made)


def test_3d_csv_keeps_array_axes_and_patients(tmp_path):
    made = csv_set(tmp_path / "set", n=8, dims=3, dtype="int16")
    source = open_detection(made)
    assert source.spatial_dims == 3
    assert [b for _, (b, _) in sorted(_boxes_by_image(source).items())] == [t[0] for t in _truth(8, 3)]
    assert source.splits["train"][0].patient_id == "p0"


def test_voc_official_split_is_kept(tmp_path):
    root = voc_set(tmp_path / "voc", n=8)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img00\nimg01\nimg02\nimg03\nimg04\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("img05\nimg06\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img07\n")
    source = open_detection(root)
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 5, "val": 2, "test": 1}


def _write_csv(tmp_path: Path, rows: list[str]) -> Path:
    image = np.zeros((1, 20, 30), np.uint8)
    from tests.detection_sets import write_picture

    write_picture(tmp_path / "images", "a", image)
    path = tmp_path / "boxes.csv"
    path.write_text("path,x1,y1,x2,y2,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("images/a.png,5,5,5,9,bright", "no area"),
        ("images/a.png,5,5,9,9,purple", "class 'purple' is not one of the declared classes"),
        ("images/a.png,5,5,40,9,bright", "outside the image of size"),
    ],
)
def test_bad_boxes_name_the_file_or_are_dropped_with_a_count(row, reason, tmp_path):
    from medattn.tasks.detect.data import read_item

    path = _write_csv(tmp_path, ["images/a.png,1,1,8,8,bright", row])

    def opened(drop: bool):
        source = open_detection(path, class_names=["bright"], drop_bad_boxes=drop)
        item = source.splits["train"][0]
        _, _, dropped = read_item(item, drop=drop)
        return source, item, dropped

    with pytest.raises(DataError, match=reason) as error:
        opened(False)
    assert "boxes.csv line 3" in str(error.value)
    assert "a.png" in str(error.value)
    source, item, dropped = opened(True)
    assert len(item.boxes) == 1
    assert sum(dropped.values()) + sum("dropped 1 bad box" in n for n in source.notes) == 1


def test_a_box_one_pixel_past_the_edge_is_cut_to_the_image(tmp_path):
    from medattn.tasks.detect.data import read_item

    path = _write_csv(tmp_path, ["images/a.png,20,10,30.8,20.5,bright"])
    item = open_detection(path).splits["train"][0]
    read_item(item, drop=False)
    assert item.boxes.tolist() == [[10.0, 20.0, 20.0, 30.0]]


def test_data_boxes_turns_masks_into_a_box_csv_with_patients(tmp_path):
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / "seg" / folder).mkdir(parents=True)
    rows = ["file,patient_id"]
    for i in range(4):
        mask = np.zeros((16, 20), np.uint8)
        if i:
            mask[2:5, 3:9] = 255
            mask[10:12, 15:19] = 255
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / f"s{i}.png")
        Image.fromarray(np.full((16, 20), 80, np.uint8)).save(tmp_path / "seg" / "images" / f"s{i}.png")
        rows.append(f"s{i}.png,pat{i // 2}")
    (tmp_path / "seg" / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "boxes.csv"
    summary = invoke("data", "boxes", "--masks", tmp_path / "seg", "--out", out, "--json")
    assert summary["boxes"] == {"1": 6}
    assert summary["images_without_boxes"] == 1
    source = open_detection(out)
    items = {Path(i.image).stem: i for i in source.splits["train"]}
    assert items["s1"].boxes.tolist() == [[2, 3, 5, 9], [10, 15, 12, 19]]
    assert items["s1"].patient_id == "pat0"
    assert len(items["s0"].boxes) == 0
    bigger = invoke("data", "boxes", "--masks", tmp_path / "seg", "--out", out, "--min-size", "10", "--force", "--json")
    assert bigger["boxes"] == {"1": 3}


def test_data_inspect_reports_boxes_sizes_and_bad_boxes(tmp_path):
    made = csv_set(tmp_path / "set", n=8)
    text = made.read_text().splitlines()
    made.write_text("\n".join([*text, "images/case00.png,3,3,3,9,bright,p0"]) + "\n")  # one box without area
    report = invoke("data", "inspect", made, "--json")
    assert report["task"] == "detection"
    assert report["splits"] == {"train": 8}
    assert report["images_without_boxes"]["count"] == 2
    assert report["classes"]["bright"]["side_px"]["x"]["median"] >= 5
    assert report["classes"]["dark"]["aspect_ratio"]["median"] == pytest.approx(1.0)
    assert "1 no area" in report["bad_boxes"][0]
    assert report["patients"]["count"] == 4


def test_options_for_boxes_are_refused_by_other_tasks(tmp_path):
    from tests.matrix_sets import classification_set
    from typer.testing import CliRunner

    from medattn.cli import app

    data = classification_set(tmp_path, "csv", 2, "uint8", "auto")
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--drop-bad-boxes"])
    assert isinstance(result.exception, ConfigError)
    assert "means nothing to classification; it is used by detection" in str(result.exception)


def test_gray_pictures_among_colour_ones_are_read_as_colour(tmp_path):
    from PIL import Image

    from medattn.config import RunConfig
    from medattn.tasks import get_task

    data = csv_set(tmp_path / "set", n=12)
    for i in range(0, 12, 2):  # every other picture saved in colour, the same gray in each channel
        path = tmp_path / "set" / "images" / f"case{i:02d}.png"
        Image.open(path).convert("RGB").save(path)
    config = RunConfig(task="detection")
    config.data.path = str(data)
    loaded = get_task("detection").load(config)
    assert loaded.in_channels == 3
    assert {x.shape[0] for x in loaded.extra["detection"].train_x} == {3}


def test_yolo_split_folders_polygons_and_voc_names_without_suffix(tmp_path):
    import shutil

    root = yolo_set(tmp_path / "flat", n=12)
    export = tmp_path / "export"  # Roboflow's layout: train/ valid/ test/, each with images/ and labels/
    for split, stems in (("train", range(0, 8)), ("valid", range(8, 10)), ("test", range(10, 12))):
        for folder in ("images", "labels"):
            (export / split / folder).mkdir(parents=True)
        for i in stems:
            shutil.copy(root / "images" / f"img{i:02d}.png", export / split / "images")
            if (root / "labels" / f"img{i:02d}.txt").is_file():
                shutil.copy(root / "labels" / f"img{i:02d}.txt", export / split / "labels")
    (export / "data.yaml").write_text("names: [bright, dark]\nnc: 2\n")
    label = export / "train" / "labels" / "img00.txt"
    label.write_text(label.read_text() + "1 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5\n")  # a polygon: 0.1-0.3 x 0.1-0.5
    source = open_detection(export)
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 8, "val": 2, "test": 2}
    first = next(i for i in source.splits["train"] if Path(i.image).stem == "img00")
    np.testing.assert_allclose(first.boxes[-1], [4.8, 6.4, 24.0, 19.2], rtol=1e-5)  # rows 0.1-0.5 of 48, columns of 64
    voc = voc_set(tmp_path / "voc", n=4)
    xml = voc / "Annotations" / "img00.xml"
    xml.write_text(xml.read_text().replace("<filename>img00.png</filename>", "<filename>img00</filename>"))
    assert Path(open_detection(voc).splits["train"][0].image).name == "img00.png"


def test_a_csv_box_without_a_label_names_its_line(tmp_path):
    path = _write_csv(tmp_path, ["images/a.png,1,1,8,8,bright", "images/a.png,2,2,6,6,"])
    with pytest.raises(DataError, match="boxes.csv line 3: a box without a label"):
        open_detection(path)
