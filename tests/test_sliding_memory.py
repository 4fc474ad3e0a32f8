"""Sliding-window inference on a machine too small for its float32 buffers: float16 slabs that agree with the
float32 path, memory bounded by the estimate on a volume 8x the patch, and a refusal that says what to do."""

from pathlib import Path

import pytest
import torch

import medattn.models  # noqa: F401  (registers the models)
from medattn.data.phantom import make_phantom
from medattn.engine import window_memory
from medattn.engine.inferers import OVERLAP, sliding_window
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


def test_a_small_machine_takes_the_slab_path_within_its_estimate(case, monkeypatch):
    """The limit leaves room for float16 slabs one window at a time and not for the float32 buffers; the memory the
    call adds (VmHWM, reset first) stays within the float16 estimate."""
    model, x, patch = case
    full = sliding_window(model, x, patch=patch, transform=softmax, device=CPU)
    measure, chosen = window_memory.estimate_window, {}

    def estimate_then_limit(*args, **kwargs):
        estimate = chosen["estimate"] = measure(*args, **kwargs)
        one = window_memory.WindowEstimate(**{**vars(estimate), "batch": 1})
        monkeypatch.setenv(ENV, str(rss() + one.float16() + 1024**2))
        return estimate

    monkeypatch.setattr(window_memory, "estimate_window", estimate_then_limit)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the RSS of now
    before = rss()
    small = sliding_window(model, x, patch=patch, transform=softmax, device=CPU)
    added = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024 - before
    estimate = window_memory.WindowEstimate(**{**vars(chosen["estimate"]), "batch": 1})
    assert small.dtype == torch.float16
    assert estimate.float16() < estimate.float32()
    assert added <= estimate.float16(), (added, estimate.to_dict())
    assert (full.argmax(0) == small.argmax(0)).float().mean() > 0.999


def test_a_machine_too_small_even_for_slabs_is_refused_with_the_estimate(case, monkeypatch):
    model, x, patch = case
    monkeypatch.setenv(ENV, str(rss() + 1024))
    with pytest.raises(MemoryBudgetError, match=r"48x48x48 image .*needs about .* is available .*more memory"):
        sliding_window(model, x, patch=patch, transform=softmax, device=CPU)
