"""The images of a split's bags to explain, each with its bag's label and its own attention weight in the bag
(which images drove the bag's decision); the maps themselves explain the instance as a bag of one."""

from __future__ import annotations

from pathlib import Path


def bag_cases(run_dir: Path, *, data: str | None, split: str):
    from medattn.data.readers import read_image
    from medattn.explain.case import ExplainCase
    from medattn.tasks.mil.report import scored_split

    run, _, (truth, probs, weights, bags) = scored_split(run_dir, data, split)
    names = run.class_names
    for b, files in enumerate(bags.files):
        order = sorted(range(len(files)), key=lambda i: -weights[b][i])
        rank = {i: r + 1 for r, i in enumerate(order)}
        for i in order:  # the most attended first, so --limit keeps what drove the decision
            image, meta = read_image(files[i])
            label = int(truth[b])
            context = {
                "bag": bags.names[b],
                "bag_probabilities": dict(zip(names, map(float, probs[b]), strict=True)),
                "attention": float(weights[b][i]),
                "rank": rank[i],
                "instances": len(files),
            }
            text = f"true {names[label]}; bag {bags.names[b]}, attention {weights[b][i]:.3f} ({rank[i]}/{len(files)})"
            name = f"{bags.names[b]}-{Path(files[i]).name.split('.')[0]}"
            yield ExplainCase(name, image, meta, text, label=label, context=context)
