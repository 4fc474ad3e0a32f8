"""`medattn compress RUN --out RUN2`: a smaller run made from a finished one, on the run's own data and recipe.

- `--prune S`: remove a share S of the inner channels of every residual / U-Net block (export/prune.py), then
  fine-tune the narrower network through the engine's `fit` for a few epochs (at a tenth of the run's learning
  rate unless `--lr` says otherwise).
- `--distill --student MODEL [--student-options JSON]`: train a student from scratch with RUN as its teacher
  (engine/distill.py). With `--prune` instead of `--student`, the pruned network is the student.

RUN2 is a normal run directory (config.yaml, model.safetensors, model.json) that evaluate, predict, export and
serve accept; compress.json in it records what was done and the parameters before and after.
"""

from __future__ import annotations

import json
from pathlib import Path

from medattn.errors import ConfigError

PRUNE_EPOCHS = 3  # fine-tuning after pruning, unless --epochs says otherwise


def compress_run(
    run: str | Path,
    out: str | Path,
    *,
    prune: float | None = None,
    distill: bool = False,
    student: str | None = None,
    student_options: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    temperature: float | None = None,
    alpha: float | None = None,
    force: bool = False,
) -> dict:
    from medattn.config import load_config
    from medattn.engine.loaded import load_run
    from medattn.engine.trainer import fit
    from medattn.runs import atomic_write_json, prepare_run_dir, require_run

    run = require_run(run)
    if (student or student_options) and not distill:
        raise ConfigError("--student and --student-options name a distillation student: add --distill")
    if prune is None and not distill:
        raise ConfigError("compress: say what to do: --prune SHARE and/or --distill --student MODEL")
    if distill and (student is None) == (prune is None):
        raise ConfigError("--distill needs one student: --student MODEL, or --prune SHARE to distil into the pruned")
    if not distill and (temperature is not None or alpha is not None):
        raise ConfigError("--temperature and --alpha mean nothing without --distill")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    config = load_config(run / "config.yaml")
    teacher = load_run(run)
    before = sum(p.numel() for p in teacher.model.parameters())
    config.model.init, weights, record = None, None, {"from": str(run)}
    config.train.teacher = None
    if prune is not None:
        from medattn.export.prune import prune_model

        pruned, kept = prune_model(teacher.model, prune)
        config.model.options, weights = pruned.config["options"], pruned.state_dict()
        config.train.epochs = epochs or PRUNE_EPOCHS
        config.train.lr = lr or config.train.lr / 10
        record["prune"] = {"share": prune, "kept_channels": kept, "importance": "L1 norm of each filter"}
    else:
        config.model.name, config.model.options = student, _options(student_options)
        config.train.epochs = epochs or config.train.epochs
        config.train.lr = lr or config.train.lr
    if distill:
        config.train.teacher = str(run)
        config.train.distill_temperature = 4.0 if temperature is None else temperature
        config.train.distill_alpha = 0.5 if alpha is None else alpha
        record["distill"] = {
            "teacher": str(run),
            "temperature": config.train.distill_temperature,
            "alpha": config.train.distill_alpha,
        }
    config = type(config).from_dict(config.to_dict())  # checked as a config file would be
    target = prepare_run_dir(out, resume=False, force=force)
    result = fit(config, target, weights=weights)
    after = json.loads((target / "model.json").read_text())["model"]["parameters"]
    record.update(parameters={"before": before, "after": after, "ratio": round(after / before, 4)})
    record.update(epochs=config.train.epochs, lr=config.train.lr)
    atomic_write_json(target / "compress.json", record)
    return {**result, "compress": record}


def _options(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        example = '{"widths": [8, 16, 32]}'
        raise ConfigError(f"--student-options must be a JSON object, e.g. '{example}': {error}") from error
    if not isinstance(options, dict):
        raise ConfigError(f"--student-options must be a JSON object, got {type(options).__name__}")
    return options
