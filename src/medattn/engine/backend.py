"""Which engine runs a finished run's network at inference: PyTorch, or ONNX Runtime without PyTorch.

`--backend torch|onnx|onnx-int8` on evaluate, predict and serve sets `BACKEND` for the command (engine/loaded.py's
`reading`); `load_run` then loads `model.onnx` or `model.int8.onnx` (written by `medattn export`) as an `OnnxNet`,
and the shared pipeline (engine/inputs.py, engine/inferers.py) takes its NumPy branch, so nothing imports torch.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from medattn.errors import ConfigError, RunDirError

BACKENDS = ("torch", "onnx", "onnx-int8")
MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
BACKEND: ContextVar[str] = ContextVar("backend", default="torch")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def uses_torch() -> bool:
    return BACKEND.get() == "torch"


def onnx_file(run: Path, backend: str) -> Path:
    path = Path(run) / MODEL_FILES[backend]
    if not path.is_file():
        flags = " --quantize int8" if backend == "onnx-int8" else ""
        raise RunDirError(f"{path} is missing (--backend {backend}): medattn export {run} --format onnx{flags}")
    return path


class OnnxNet:
    """An ONNX Runtime session where the PyTorch network stood: `net(x)` maps a float32 array to the logits.

    Threads follow OMP_NUM_THREADS when it is set (ONNX Runtime's default is every core)."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for a broken file
            raise RunDirError(f"{path}: not a loadable ONNX model ({error})") from error
        self.path = Path(path)
        self.input = self.session.get_inputs()[0].name
        self.training = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def eval(self) -> OnnxNet:
        return self
