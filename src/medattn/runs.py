"""Run directories: created once, never silently overwritten, every file written atomically.

A run holds config.yaml, model.safetensors, model.json (the model card), history.csv,
checkpoint/ (resume state) and, after `evaluate`, metrics.json.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medattn.errors import MedattnError, RunDirError, WriteError

CHECKPOINT = "checkpoint/last.pt"
REBUILT_BY_RESUME = ("model.safetensors", "model.json")  # `train --resume` of a finished run writes them again


def write_atomically(path: str | Path, write: Callable[[Path], None], *, suffix: str = "") -> None:
    """Call `write(tmp)` on a temporary file in the target folder, then rename it over `path`.

    The rename is atomic on one file system, so a crash leaves either the old file or the new one,
    never half a mask. `suffix` matters for writers that pick the format from the name (nibabel).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A random name, not mkstemp: mkstemp makes the file 0600, and the rename would carry that over,
    # leaving masks that a viewer run by a colleague cannot open. The writer creates it under the umask.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:  # a full disk (ENOSPC), a quota or file-size limit (EFBIG), no permission
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
        raise WriteError(path, f"{error.strerror or error} ({kept}; free some space there and retry)") from error
    except BaseException:
        # BaseException on purpose: a Ctrl-C half way through must not leave the temp file behind.
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_durably(path: Path, data: bytes) -> None:
    """Write and fsync, so the rename that follows never publishes a file the disk does not hold yet."""
    with Path(path).open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: write_bytes_durably(tmp, text.encode()))


def finite(value: Any) -> Any:
    """Strict JSON: an undefined metric (NaN: an AUC on one class, HD95 with nothing predicted) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(finite(payload), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_save_torch(path: Path, payload: dict) -> None:
    import io

    import torch

    buffer = io.BytesIO()  # serialised in memory, so a failing disk raises OSError here, not torch's RuntimeError
    torch.save(payload, buffer)
    write_atomically(path, lambda tmp: write_bytes_durably(tmp, buffer.getvalue()))


def atomic_save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(contiguous, metadata=metadata)
    write_atomically(path, lambda tmp: write_bytes_durably(tmp, data))


def record_metrics(run: Path, key: str, metrics: dict) -> dict:
    """Add `metrics` under `key` (a split, "test+tta", ...) to run/metrics.json, keeping what is there."""
    from medattn.engine.inputs import MISSING

    if MISSING.get():  # scored without some modalities: kept beside the full-input scores, not over them
        key = f"{key}-missing-{'+'.join(MISSING.get())}"
        metrics = {**metrics, "missing": list(MISSING.get())}
    path = Path(run) / "metrics.json"
    recorded = read_json(path) if path.is_file() else {}
    recorded[key] = metrics
    atomic_write_json(path, recorded)
    return metrics


def prepare_run_dir(out: str | Path, *, resume: bool, force: bool) -> Path:
    """Create `out` for a new run, or check it can be resumed. Refuses to overwrite without --force."""
    out = Path(out)
    if resume and force:
        raise RunDirError("--resume and --force contradict each other: choose one")
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise RunDirError(
                f"cannot resume {out}: no {CHECKPOINT} there; start the run again without --resume "
                f"(--force replaces what is in {out})"
            )
        return out
    if exists:
        if not force:
            raise RunDirError(
                f"run directory {out} already exists; pass --resume to continue it or --force to replace it"
            )
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def require_run(run: str | Path) -> Path:
    """A finished run: it has the weights, the card and the config."""
    run = Path(run)
    missing = [n for n in ("config.yaml", "model.safetensors", "model.json") if not (run / n).is_file()]
    if missing:
        fix = f" ({_repair(run, missing[0])})" if (run / CHECKPOINT).is_file() else ""
        raise RunDirError(f"{run} is not a finished medattn run: missing {', '.join(missing)}{fix}")
    return run


def _repair(run: Path, name: str) -> str:
    """What `train --resume` and `train --force` would do about a damaged or missing file of a run."""
    force = f"`medattn train --data DATA --out {run} --force` trains again from scratch, replacing everything there"
    if name in REBUILT_BY_RESUME:
        return f"`medattn train --out {run} --resume` writes it again from checkpoint/ if that is intact; {force}"
    return f"`--resume` cannot continue from it; {force}"


def damaged(run: str | Path, name: str, reason: str) -> RunDirError:
    """The error for file `name` of run directory `run` that cannot be used: which file, why, and the way out."""
    return RunDirError(f"{Path(run) / name} is damaged: {reason.rstrip('. ')}. {_repair(Path(run), name)}")


@contextmanager
def run_file(run: str | Path, name: str) -> Iterator[None]:
    """Whatever using file `name` of `run` raises inside the block becomes `damaged(run, name, ...)`.

    Broad on purpose: torch, safetensors, YAML and the code reading a hand-edited card raise any type.
    """
    try:
        yield
    except RunDirError:
        raise
    except MedattnError as error:
        raise damaged(run, name, str(error)) from error
    except Exception as error:
        raise damaged(run, name, f"{type(error).__name__}: {error}") from error


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise RunDirError(f"cannot read {path}: {error}") from error
