"""Tiny trained runs of every task, exported to ONNX, shared by the deployment tests (export, backends, serving)."""

from __future__ import annotations

import sys
from pathlib import Path

from medattn.config import RunConfig
from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir

sys.path.insert(0, str(Path(__file__).parent))
from explain_data import blob_csv, blob_segmentation, cli_json, train_tiny  # noqa: E402

# A process where importing torch or MONAI fails: the ONNX backends must run the whole pipeline without them.
TORCH_HIDDEN = """
import importlib.abc, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "monai"):
            raise ImportError(f"{name} is hidden: the ONNX backend must not import it")

sys.meta_path.insert(0, Hide())
from medattn.cli import main
sys.argv = ["medattn", *sys.argv[1:]]
main()
"""


def deploy_runs(root: Path) -> dict:
    """{"data": blob csv, "segdata": folder, "classify"/"segment"/"regress": run}, each exported (classify also
    to INT8)."""
    from medattn.tasks.regress.phantom import save_burden_npz

    csv = blob_csv(root / "csv", n=100)
    runs = {"data": csv, "classify": train_tiny(csv, root / "classify", epochs=2)}
    runs["segdata"] = blob_segmentation(csv, root / "segdata")
    config = RunConfig()
    config.data.path, config.data.patch = str(runs["segdata"]), [16, 16]
    config.model.name, config.model.options = "attention_unet", {"channels": [8, 16, 32]}
    config.train.epochs, config.train.batch_size, config.train.threads = 2, 8, 1
    runs["segment"] = prepare_run_dir(root / "segment", resume=False, force=False)
    fit(config, runs["segment"])
    burden = save_burden_npz(root / "burden.npz", n_train=48, n_val=16, n_test=8, size=16, seed=2)
    runs["burden"] = burden
    runs["regress"] = train_tiny(burden, root / "regress", epochs=1)
    runs["exports"] = {
        "classify": cli_json("export", runs["classify"], "--quantize", "int8"),
        "segment": cli_json("export", runs["segment"]),
        "regress": cli_json("export", runs["regress"]),
    }
    return runs
