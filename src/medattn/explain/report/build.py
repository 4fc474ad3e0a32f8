"""Assembling RUN/report.html for any task."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from medattn.explain.report.figures import file_uri, img, training_curves
from medattn.explain.report.page import Section, card_section, figure, page

GALLERY = 4  # cases of each kind (correct, wrong) shown with their explanations
METHODS = ["gradcam", "attention"]


def gallery(run_dir: Path, *, data: str | None, split: str, work: Path, methods=tuple(METHODS)) -> Section:
    """Test cases with their explanations: correct and wrong ones where the task has classes (a model without
    attention modules is shown with Grad-CAM alone)."""
    from medattn.errors import ConfigError

    try:
        return _gallery(run_dir, data=data, split=split, work=work, methods=list(methods))
    except ConfigError as error:
        if "attention" in methods and "no attention modules" in str(error):
            return _gallery(run_dir, data=data, split=split, work=work, methods=["gradcam"])
        raise


def _gallery(run_dir: Path, *, data: str | None, split: str, work: Path, methods: list[str]) -> Section:
    from medattn.engine.loaded import load_run
    from medattn.explain.explainer import Explainer
    from medattn.explain.outputs import write_explanation
    from medattn.tasks import task_for_run

    loaded = load_run(run_dir)
    explainer = Explainer(loaded, methods)
    names = loaded.card.get("class_names") or []
    kinds: dict[str, list[str]] = {"correct": [], "wrong": [], "cases": []}
    for case in islice(task_for_run(run_dir).explain_cases(run_dir, data=data, split=split), 64):
        explained = explainer.explain(case.name, case.image, case.meta, mask=case.mask)
        kind = "cases" if case.label is None else "correct" if names[case.label] == explained.target else "wrong"
        if len(kinds[kind]) >= GALLERY * len(methods):
            continue
        for method, files in write_explanation(explained, work).items():
            caption = f"{case.name} ({case.truth}): {explained.title} — {method}"
            kinds[kind].append(figure(img(file_uri(files["png"]), f"{case.name} {method}"), caption))
        if all(len(items) >= GALLERY * len(methods) for items in (kinds["correct"], kinds["wrong"])) or (
            len(kinds["cases"]) >= GALLERY * len(methods)
        ):
            break
    body = "".join(f"<h3>{kind}</h3><div class='grid'>{''.join(items)}</div>" for kind, items in kinds.items() if items)
    return Section(f"Gallery: {split} cases and their explanations ({', '.join(methods)})", body)


def write_report(run_dir: str | Path, *, data: str | None = None, split: str = "test") -> Path:
    import tempfile

    from medattn.runs import atomic_write_text, read_json, require_run
    from medattn.tasks import task_for_run

    run_dir = require_run(run_dir)
    card = read_json(run_dir / "model.json")
    task = task_for_run(run_dir)
    sections = [card_section(card)]
    curves = training_curves(run_dir / "history.csv")
    if curves:
        sections.append(Section("Training curves", curves))
    sections += task.report_sections(run_dir, data=data, split=split)
    if task.explains:  # a gallery of test cases with their maps
        with tempfile.TemporaryDirectory() as work:
            sections.append(gallery(run_dir, data=data, split=split, work=Path(work)))
    target = run_dir / "report.html"
    atomic_write_text(target, page(f"medattn report: {run_dir.name}", sections))
    return target
