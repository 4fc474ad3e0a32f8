"""INT8 static quantization with ONNX Runtime: QDQ format, calibrated on the run's training images.

Weights are signed INT8 per output channel, activations unsigned INT8 (U8S8), ranges from MinMax calibration on
up to 128 training inputs prepared as inference prepares them. What INT8 changes is measured on the validation
inputs the FP32 export was checked on (largest output difference, agreement of the arg-max); it is reported, not
a gate: INT8 is lossy by design, and `benchmarks/deploy.py` measures its effect on the test metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_INPUTS = 128


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one batch of one input at a time."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 8) -> None:
        self.batches = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize_int8(run: Path, card: dict, fp32: Path, *, expected: np.ndarray, inputs: np.ndarray) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from medattn.export.samples import real_inputs
    from medattn.export.to_onnx import onnx_outputs

    calibration = real_inputs(run, card, split="train", limit=CALIBRATION_INPUTS)
    prepared, out = run / "model.prep.onnx", run / "model.int8.onnx"
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), _Reader("image", calibration), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)
    got = onnx_outputs(out, inputs)
    agree = (got.argmax(axis=1) == expected.argmax(axis=1)).mean() if expected.shape[1] > 1 else float("nan")
    return {
        "file": out.name,
        "format": "QDQ, weights int8 per channel, activations uint8, MinMax",
        "calibration": {"inputs": len(calibration), "split": "train"},
        "size_mb": round(out.stat().st_size / 1e6, 3),
        "max_abs_diff": float(np.abs(got - expected).max()),
        "argmax_agreement": float(agree),
    }
