"""`medattn explain`: files, or a split of a data set, explained with one or more methods; with `score`, the
maps' faithfulness and localisation against a random map (scores.py) instead of files."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from medattn.errors import ConfigError
from medattn.explain.explainer import Explainer
from medattn.explain.methods import parse_methods
from medattn.explain.outputs import write_explanation


def file_cases(files: list[Path], *, series: str | None = None):
    from medattn.data.readers import read_image
    from medattn.explain.case import ExplainCase

    for file in files:
        image, meta = read_image(file, series_uid=series)
        yield ExplainCase(Path(file).name.split(".")[0], image, meta, truth="")


def run_explain(
    run_dir: Path,
    files: list[Path] | None,
    *,
    method: str = "gradcam",
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    target: str | None = None,
    layer: str | None = None,
    region: str = "predicted",
    out: Path | None = None,
    npy: bool = False,
    score: bool = False,
    removal: str = "blur",
    steps: int = 10,
    seed: int = 0,
    progress=iter,
) -> dict:
    from medattn.engine.loaded import load_run
    from medattn.tasks import task_for_run

    if files and data:
        raise ConfigError("give image files or --data, not both")
    if not files and not data:
        raise ConfigError("give image files to explain, or --data PATH --split NAME for a data set")
    if region not in ("predicted", "mask"):
        raise ConfigError(f"--region {region!r}: predicted | mask")
    methods = parse_methods(method)
    task = task_for_run(run_dir)
    if not task.explains:
        raise ConfigError(
            f"{run_dir} is a {task.name} run: explain's maps explain one class score, output or region, which its "
            "outputs are not; medattn predict and medattn report show its results"
        )
    run = load_run(run_dir)
    explainer = Explainer(run, methods, layer=layer, target=target, region=region)
    cases = file_cases(files) if files else task.explain_cases(Path(run_dir), data=data, split=split)
    cases = islice(cases, limit) if limit else cases
    if score:
        from medattn.explain.scores import score_cases

        result = score_cases(explainer, progress(cases), removal=removal, steps=steps, seed=seed)
        return {"run": str(run.path), "data": data, "split": split, "task": run.task, **result}
    out = Path(out) if out is not None else run.path / "explanations"
    rows = []
    for case in progress(cases):
        explained = explainer.explain(case.name, case.image, case.meta, mask=case.mask)
        rows.append(
            {
                "name": case.name,
                "prediction": explained.title,
                "truth": case.truth,
                "target": explained.target,
                "files": write_explanation(explained, out, npy=npy),
                **({"context": case.context} if case.context else {}),
            }
        )
    return {"run": str(run.path), "task": run.task, "methods": methods, "out": str(out), "explanations": rows}


def print_explained(payload: dict) -> None:
    if "explanations" not in payload:
        from medattn.explain.scores import print_scores

        print_scores(payload)
        return
    for row in payload["explanations"]:
        pngs = ", ".join(files["png"] for files in row["files"].values())
        print(f"{row['name']}: {row['prediction']} -> {pngs}")
