"""Inference on a machine too small for it. Sliding window: float16 slabs that agree with the float32 path, memory
bounded by the estimate on a volume 8x the patch, and a refusal that says what to do. Whole images: fewer at a
time, the same outputs."""

import json
import os
import subprocess
import sys

import pytest
import torch

import medattn.models  # noqa: F401  (registers the models)
from medattn.data.phantom import make_phantom
from medattn.engine.inferers import OVERLAP, sliding_window, whole_image
from medattn.engine.memory import ENV, rss
from medattn.engine.slab_window import slab_sliding_window, window_starts
from medattn.errors import MemoryBudgetError
from medattn.registry import create_model

CPU = torch.device("cpu")


def softmax(logits):
    return logits.softmax(dim=1)


@pytest.fixture(scope="module")
def case():
    """A small 3D U-Net (fixed seed) and a 3D phantom volume 8x the volume of its patch."""
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=3, in_channels=1, num_classes=3, options={"channels": [4, 8, 16]})
    volume = make_phantom(spatial_dims=3, size=48, seed=1).image  # (1, 48, 48, 48)
    x = torch.as_tensor(volume, dtype=torch.float32)
    x = (x - x.mean()) / x.std()
    return model.eval(), x, [24, 24, 24]


def test_window_starts_match_monai():
    from monai.data.utils import dense_patch_slices

    for size, patch in ((48, 24), (50, 24), (24, 24), (97, 32), (10, 10)):
        theirs = sorted({s[0].start for s in dense_patch_slices((size,), (patch,), (max(int(patch * 0.5), 1),))})
        assert window_starts(size, patch, OVERLAP) == theirs


def test_float16_slabs_agree_with_the_float32_path(case):
    model, x, patch = case
    full = sliding_window(model, x, patch=patch, transform=softmax, device=CPU)
    with torch.inference_mode():
        slabs = slab_sliding_window(model, x, patch=patch, overlap=OVERLAP, transform=softmax, device=CPU, batch=4)
    assert full.dtype == torch.float32
    assert slabs.dtype == torch.float16
    assert (full - slabs.float()).abs().max() < 2e-3
    assert (full.argmax(0) == slabs.argmax(0)).float().mean() > 0.999


def test_a_small_machine_takes_the_slab_path_within_its_estimate(tmp_path):
    """In a child process (large allocations mmapped, so freed memory leaves RSS), after one warm-up call: the limit
    leaves room for float16 slabs one window at a time and not for the float32 buffers; the memory the call adds
    (VmHWM, reset first) stays within the float16 estimate."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["dtype"] == "torch.float16"
    assert row["float16"] < row["float32"]
    assert row["added"] <= row["float16"], row
    assert row["agreement"] > 0.999


CHILD = """
import json, os
from pathlib import Path
import torch
import medattn.models
from medattn.data.phantom import make_phantom
from medattn.engine import window_memory
from medattn.engine.inferers import sliding_window
from medattn.engine.memory import ENV, peak_rss, rss
from medattn.registry import create_model

torch.manual_seed(0)
model = create_model("unet", spatial_dims=3, in_channels=1, num_classes=3, options={"channels": [4, 8, 16]}).eval()
x = torch.as_tensor(make_phantom(spatial_dims=3, size=48, seed=1).image)
x = (x - x.mean()) / x.std()
softmax = lambda t: t.softmax(dim=1)
full = sliding_window(model, x, patch=[24, 24, 24], transform=softmax, device=torch.device("cpu"))
measure, seen = window_memory.estimate_window, {}

def small_machine(*args, **kwargs):
    seen["estimate"] = estimate = measure(*args, **kwargs)
    one = window_memory.WindowEstimate(**{**vars(estimate), "batch": 1})
    os.environ[ENV] = str(rss() + one.float16() + 1024**2)
    return estimate

window_memory.estimate_window = small_machine
for _ in range(2):  # the first call loads what the slab path loads once
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the RSS of now
    before = rss()
    small = sliding_window(model, x, patch=[24, 24, 24], transform=softmax, device=torch.device("cpu"))
    added = peak_rss() - before
one = window_memory.WindowEstimate(**{**vars(seen["estimate"]), "batch": 1})
agreement = float((full.argmax(0) == small.argmax(0)).float().mean())
print(json.dumps({"dtype": str(small.dtype), "added": added, "float16": one.float16(),
                  "float32": seen["estimate"].float32(), "agreement": agreement}))
"""


def test_a_machine_too_small_even_for_slabs_is_refused_with_the_estimate(case, monkeypatch):
    model, x, patch = case
    monkeypatch.setenv(ENV, str(rss() + 1024))
    with pytest.raises(MemoryBudgetError, match=r"48x48x48 image .*needs about .* is available .*more memory"):
        sliding_window(model, x, patch=patch, transform=softmax, device=CPU)


def test_whole_images_run_fewer_at_a_time_on_a_small_machine_with_the_same_outputs(monkeypatch, capsys):
    from medattn.engine.window_memory import SCRATCH, activation_bytes

    torch.manual_seed(0)
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=3).eval()
    x = torch.randn(16, 1, 32, 32)
    expected = whole_image(model, x, device=CPU)
    with torch.inference_mode():
        per_image, _ = activation_bytes(model, x[:1])
    monkeypatch.setenv(ENV, str(rss() + 4 * per_image + SCRATCH + per_image // 2))
    assert torch.allclose(torch.as_tensor(whole_image(model, x, device=CPU)), torch.as_tensor(expected), atol=1e-6)
    assert "runs 4 images at a time" in capsys.readouterr().err
    monkeypatch.setenv(ENV, str(rss() + (per_image + SCRATCH) // 2))
    with pytest.raises(MemoryBudgetError, match=r"inference on one 1x32x32 input .*--size"):
        whole_image(model, x, device=CPU)
