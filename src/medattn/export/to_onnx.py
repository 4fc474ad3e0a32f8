"""`medattn export RUN --format onnx`: RUN/model.onnx, checked against PyTorch on real inputs.

The network is exported with a dynamic batch axis; a dense (fully convolutional) task's network also gets dynamic
spatial axes when it gives PyTorch's answer at twice its patch size (otherwise its spatial size stays fixed, and
the record says so). The parity check runs real images of the run's validation split through both and fails the
export above `tolerance` (maximum absolute difference of the outputs). The record goes to RUN/export.json.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from medattn.errors import ConfigError
from medattn.runs import atomic_write_json, read_json

OPSET = 17
TOLERANCE = 1e-3


def _export(model, example, path: Path, *, spatial: bool) -> None:
    import torch

    spatial_axes = {2 + i: f"s{i}" for i in range(example.ndim - 2)} if spatial else {}
    axes = {"image": {0: "batch", **spatial_axes}, "output": {0: "batch", **spatial_axes}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            model, (torch.from_numpy(example),), str(path), input_names=["image"], output_names=["output"],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def torch_outputs(model, x: np.ndarray, *, batch: int = 32) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + batch])).float().numpy() for i in range(0, len(x), batch)]
        )


def onnx_outputs(path: Path, x: np.ndarray, *, batch: int = 32) -> np.ndarray:
    from medattn.engine.backend import OnnxNet

    net = OnnxNet(path)
    return np.concatenate([net(x[i : i + batch]) for i in range(0, len(x), batch)])


def _dynamic_spatial(model, path: Path, x: np.ndarray) -> bool:
    """Export with dynamic spatial axes and keep them if the network agrees with PyTorch at twice the size."""
    _export(model, x[:1], path, spatial=True)
    bigger = np.concatenate([x[:1]] * 2, axis=2)
    for axis in range(3, x.ndim):
        bigger = np.concatenate([bigger] * 2, axis=axis)
    try:
        expected = torch_outputs(model, bigger)
        return bool(np.abs(onnx_outputs(path, bigger) - expected).max() <= TOLERANCE * max(1.0, np.abs(expected).max()))
    except Exception:  # noqa: BLE001  (a network that does not run at another size keeps a fixed one)
        return False


def export_onnx(run: Path, *, quantize: str | None = None, tolerance: float = TOLERANCE, samples: int = 64) -> dict:
    """Write RUN/model.onnx (and with quantize="int8", RUN/model.int8.onnx); return and record what was checked."""
    from medattn.engine.loaded import load_run
    from medattn.export.samples import real_inputs
    from medattn.tasks import task_for_run

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r}: the one quantization is int8")
    loaded = load_run(run)
    run = loaded.path
    x = real_inputs(run, loaded.card, split="val", limit=samples)
    path = run / "model.onnx"
    started = time.perf_counter()
    spatial = task_for_run(run).dense and _dynamic_spatial(loaded.model, path, x)
    if not spatial:
        _export(loaded.model, x[:1], path, spatial=False)
    expected, got = torch_outputs(loaded.model, x), onnx_outputs(path, x)
    diff = float(np.abs(got - expected).max())
    record = {
        "format": "onnx",
        "file": path.name,
        "opset": OPSET,
        "dynamic_axes": ["batch", *(["spatial"] if spatial else [])],
        "input_shape": ["batch", x.shape[1], *(["any"] * (x.ndim - 2) if spatial else list(x.shape[2:]))],
        "size_mb": round(path.stat().st_size / 1e6, 3),
        "parity": {"inputs": len(x), "split": "val", "max_abs_diff": diff, "tolerance": tolerance},
        "seconds": round(time.perf_counter() - started, 2),
    }
    if diff > tolerance:
        path.unlink()
        raise ConfigError(
            f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} on {len(x)} real inputs (tolerance "
            f"{tolerance}); the export was removed"
        )
    if quantize == "int8":
        from medattn.export.quantize import quantize_int8

        record["int8"] = quantize_int8(run, loaded.card, path, expected=expected, inputs=x)
    previous = read_json(run / "export.json") if (run / "export.json").is_file() else {}
    atomic_write_json(run / "export.json", {**previous, **record})
    return {"run": str(run), **record}
