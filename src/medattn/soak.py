"""Kill -9 at random moments of training (in an epoch, in validation, in a checkpoint write), resume each time,
and compare the end with an unbroken run: for tests/test_soak.py and benchmarks/soak.py.

Training runs in a forked child (no import cost, a real SIGKILL). The child appends the phase it enters to a log
beside the run ("validate", "checkpoint"), so the parent can aim a kill at the k-th validation or checkpoint
write, or fire after a random delay. After every kill each checkpoint file on disk must load.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from medattn.config import RunConfig
from medattn.runs import CHECKPOINT

PHASES = ("epoch", "validate", "checkpoint")
TIMING_COLUMNS = ("seconds",)  # and every *_per_second column: they measure the machine, not the training


def phantom_config(root: Path, kind: str, *, epochs: int, seed: int = 0) -> RunConfig:
    """A tiny run on phantom data: `kind` is "images" (labelled images in an .npz) or "masks" (images with masks
    in a folder); the task is recognised from the data."""
    import numpy as np
    from PIL import Image

    from medattn.data.phantom import make_segmentation_set, save_medmnist_npz

    config = RunConfig()
    config.train.epochs, config.train.seed, config.train.threads = epochs, seed, 1
    if kind == "images":
        save_medmnist_npz(root / "images.npz", n_train=64, n_val=16, n_test=8, spatial_dims=2, size=16, num_classes=2)
        config.data.path = str(root / "images.npz")
        config.model.options = {"widths": [4, 8, 8]}
        config.train.batch_size = 16
        return config
    images, masks = make_segmentation_set(n=16, spatial_dims=2, size=32, seed=seed, label_map={"lesion": 1})
    for folder in ("images", "masks"):
        (root / "seg" / folder).mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(root / "seg" / "images" / f"p{i:02d}.png")
        Image.fromarray(mask).save(root / "seg" / "masks" / f"p{i:02d}.png")
    config.data.path = str(root / "seg")
    config.model.name = "attention_unet"
    config.model.options = {"channels": [4, 8, 16]}
    config.train.batch_size = 4
    return config


def _train(config: RunConfig, run: Path, resume: bool, log: Path) -> None:
    """The child: train, noting each phase it enters in `log` (a line per entry)."""
    from medattn.engine import step
    from medattn.engine.trainer import fit
    from medattn.tasks import task_for_config

    def noted(phase, function):
        def call(*args, **kwargs):
            with log.open("a") as handle:
                handle.write(phase + "\n")
            return function(*args, **kwargs)

        return call

    task_type = type(task_for_config(config))
    task_type.validate = noted("validate", task_type.validate)
    step.ckpt.save_checkpoint = noted("checkpoint", step.ckpt.save_checkpoint)
    fit(config, run, resume=resume, quiet=True)


def _entries(log: Path, phase: str) -> int:
    return log.read_text().split().count(phase) if log.exists() else 0


def unreadable_checkpoints(run: Path) -> list[str]:
    """The checkpoint files in `run` that do not load (each must, whenever a kill lands)."""
    from safetensors.torch import load_file

    from medattn.engine.checkpoint import load_checkpoint
    from medattn.errors import RunDirError

    bad = []
    if (run / CHECKPOINT).exists():
        try:
            load_checkpoint(run)
        except RunDirError as error:
            bad.append(str(error))
    best = run / "checkpoint" / "best.safetensors"
    if best.exists():
        try:
            load_file(best)
        except Exception as error:  # safetensors raises its own type for a damaged file
            bad.append(f"{best}: {error}")
    return bad


def killed_run(config: RunConfig, run: Path, *, kills: int, rng: random.Random, epoch_seconds: float) -> dict:
    """Train `config` into `run`, killing it `kills` times (phases in turn, moments at random) and resuming after
    each, then let it finish. Returns the phases killed in, kills that found the run already done, and every
    checkpoint that did not load after a kill."""
    from medattn.runs import prepare_run_dir

    context = multiprocessing.get_context("fork")
    report: dict = {"killed_in": {p: 0 for p in PHASES}, "finished_before_kill": 0, "unreadable": [], "starts": 0}
    for attempt in range(kills + 1):
        resume = (run / CHECKPOINT).is_file()
        prepare_run_dir(run, resume=resume, force=not resume)
        log = run.parent / f"{run.name}.phases"
        log.unlink(missing_ok=True)
        child = context.Process(target=_train, args=(config, run, resume, log))
        child.start()
        report["starts"] += 1
        if attempt == kills:  # the last start runs to the end
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"the final resume of {run} failed (exit code {child.exitcode})")
            break
        phase = PHASES[attempt % len(PHASES)]
        _aim(child, phase, log, rng, epoch_seconds)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            report["killed_in"][phase] += 1
        else:
            report["finished_before_kill"] += 1
        child.join()
        report["unreadable"] += unreadable_checkpoints(run)
        if (run / "model.json").exists() and not child.exitcode:
            break
    return report


def _aim(child, phase: str, log: Path, rng: random.Random, epoch_seconds: float) -> None:
    """Wait until the moment to kill: a random delay within about two epochs, or shortly after the child enters
    its k-th validation or checkpoint write (k of 1 or 2, the pause within the phase's usual length)."""
    if phase == "epoch":
        time.sleep(rng.uniform(0.05, 2.0) * epoch_seconds)
        return
    target, pause = rng.randint(1, 2), rng.uniform(0.0, 0.1 if phase == "validate" else 0.01) * epoch_seconds
    deadline = time.monotonic() + 60 * max(epoch_seconds, 1.0)
    while child.is_alive() and _entries(log, phase) < target and time.monotonic() < deadline:
        time.sleep(0.0005)
    time.sleep(pause)


def epoch_seconds(run: Path) -> float:
    """About how long one epoch of a finished run took, its validation included (history's training seconds,
    plus a third)."""
    with (run / "history.csv").open() as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return 1.3 * sum(seconds) / len(seconds)


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two finished runs: weights (bit for bit), best weights, history (timing columns
    aside) and the validation metrics of the card. Empty when they are the same run."""
    import json

    import torch
    from safetensors.torch import load_file

    found = []
    for name in ("model.safetensors", "checkpoint/best.safetensors"):
        left, right = load_file(a / name), load_file(b / name)
        if left.keys() != right.keys() or not all(torch.equal(left[k], right[k]) for k in left):
            found.append(f"{name}: tensors differ")
    if _history(a) != _history(b):
        found.append("history.csv differs")
    metrics = [json.loads((run / "model.json").read_text())["metrics"] for run in (a, b)]
    if metrics[0] != metrics[1]:
        found.append(f"model.json metrics differ: {metrics[0]} vs {metrics[1]}")
    return found


def _history(run: Path) -> list[dict]:
    with (run / "history.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS and not k.endswith("_per_second")}
            for row in csv.DictReader(handle)
        ]
