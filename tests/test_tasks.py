"""The task-plugin contract: every registered task gives the engine what it needs, every model registered for a
task builds, trains and round-trips for it in 2D and 3D, and nothing outside tasks/ names a task."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import medattn.models  # noqa: F401  (registers the models)
from medattn.registry import MODELS, TASKS, create_model
from medattn.tasks import all_tasks, get_task, legacy_task, task_for_data
from medattn.tasks.base import Task

SRC = Path(__file__).resolve().parents[1] / "src" / "medattn"
REQUIRED = (
    "recognises",
    "open",
    "load",
    "default_model",
    "defaults",
    "auto_epochs",
    "train_set",
    "loss",
    "validate",
    "card",
    "evaluate",
    "predict",
    "print_report",
    "print_predictions",
    "inspect",
    "print_inspect",
    "fold_pool",
    "fold_source",
    "score_fold",
    "spatial_dims",
    "explain_target",
    "explain_cases",
    "report_sections",
)
# Every (task, model) pair; classifier backbones (the "classification" tag, also used by regression) pass the
# stricter tests/test_models.py contract in 2D and 3D, so here each task runs its default one of them.
ALL_PAIRS = [(task.name, entry.name) for task in all_tasks() for entry in MODELS if task.model_tag in entry.tasks]
PAIRS = [
    (task, model)
    for task, model in ALL_PAIRS
    if "classification" not in MODELS.get(model).tasks or model == get_task(task).default_model(2)[0]
]


def test_the_tasks_are_registered_and_every_model_fits_one():
    assert {"classification", "segmentation", "regression", "detection"} <= set(TASKS.names())
    assert {model for _, model in ALL_PAIRS} == set(MODELS.names())
    assert {model for _, model in PAIRS} | set(MODELS.names("classification")) == set(MODELS.names())


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_implements_the_protocol(name):
    task = get_task(name)
    missing = [method for method in REQUIRED if getattr(type(task), method) is getattr(Task, method)]
    assert not missing, f"{name} does not implement {missing}"
    assert set(REQUIRED) <= Task.__abstractmethods__  # a task lacking one cannot even be built

    assert task.losses
    assert task.select_metrics
    assert task.fold_metric in task.summary_keys
    assert task.model_tag in {tag for entry in MODELS for tag in entry.tasks}
    assert task.default_model(2)[0] in MODELS.names(task.model_tag)
    assert set(task.predict_options) <= {"tta", "out_dir", "overwrite"}


def test_a_task_missing_part_of_the_protocol_cannot_be_built():
    class Half(Task):
        name = "half"

        def recognises(self, path):
            return False

    with pytest.raises(TypeError, match="abstract"):
        Half()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("task_name", "model_name"), PAIRS)
def test_every_model_trains_and_round_trips_for_its_tasks(task_name, model_name, dims, tmp_path):
    task = get_task(task_name)
    size = 32 if dims == 2 else 16
    torch.manual_seed(0)
    model = create_model(model_name, spatial_dims=dims, in_channels=2, num_classes=3)
    x = torch.randn(2, 2, *[size] * dims)
    out = model.train()(x)
    outputs = out if isinstance(out, dict) else {"": out}  # a multi-head model gives a dict of named outputs
    shapes = {name: tuple(o.shape) for name, o in outputs.items()}
    expected = task.output_shape(model, tuple(x.shape))
    assert shapes == (expected if isinstance(expected, dict) else {"": expected})
    sum(o.float().square().mean() for o in outputs.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    again = create_model(model_name, spatial_dims=dims, in_channels=2, num_classes=3, options=model.config["options"])
    again.load_state_dict(load_file(tmp_path / "m.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), again.eval()(x))


def test_data_layouts_are_recognised_by_the_right_task(tmp_path):
    import numpy as np

    (tmp_path / "seg" / "images").mkdir(parents=True)
    (tmp_path / "seg" / "masks").mkdir()
    assert task_for_data(tmp_path / "seg").name == "segmentation"
    (tmp_path / "cls.csv").write_text("path,label\n")
    (tmp_path / "reg.csv").write_text("path,age,patient_id\n")
    (tmp_path / "seg.csv").write_text("image,mask\n")
    assert task_for_data(tmp_path / "cls.csv").name == "classification"
    assert task_for_data(tmp_path / "reg.csv").name == "regression"
    assert task_for_data(tmp_path / "seg.csv").name == "segmentation"
    images = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "whole.npz", train_images=images, train_labels=np.array([[0], [1], [2], [1]]))
    np.savez(tmp_path / "float.npz", train_images=images, train_labels=np.array([[0.5], [1.2], [2.0], [1.0]]))
    assert task_for_data(tmp_path / "whole.npz").name == "classification"
    assert task_for_data(tmp_path / "float.npz").name == "regression"


def test_old_configs_and_cards_name_label_types_as_tasks():
    assert legacy_task("binary") == ("classification", "binary")
    assert legacy_task("segmentation") == ("segmentation", None)


def _code(path: Path) -> str:
    """The file without its docstrings and comments: only code can branch."""
    text = re.sub(r'"""[\s\S]*?"""', "", path.read_text())
    return re.sub(r"#.*", "", text)


def test_nothing_outside_tasks_names_a_task():
    names = [task.name for task in all_tasks()]
    pattern = re.compile(r"[\"']({})[\"']".format("|".join(map(re.escape, names))))
    offenders = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(("tasks/", "models/")) or relative == "registry.py":
            continue  # task folders; model files tag models with the task whose outputs they give
        offenders += [f"{relative}: {m.group(0)}" for m in pattern.finditer(_code(path))]
    assert not offenders, offenders
    cli = _code(SRC / "cli.py")
    assert not [n for n in names if re.search(rf"\b{n}\b", cli)]
