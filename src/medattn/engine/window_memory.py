"""Sliding-window inference's memory, estimated before the first window, and the path that fits the machine.

The float32 path (MONAI's sliding_window_inference) holds the blended (K, *S) logits and their weight map, the
transformed copy, and with test-time flips a flipped input, a flipped output and the running sum: about
(3 + 2 * flips) * K * S * 4 bytes. The slab path (engine/slab_window.py) holds (K, *S) in float16 plus a float32
slab one patch deep: about (1 + 2 * flips) * K * S * 2 bytes + (K + 1) * slab * 8 bytes. Both add the windows'
activations, measured by forward hooks on one window (every module's output held at once: an upper bound), times
the windows run together, and SCRATCH for what the convolution library allocates beyond its outputs.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

from medattn.engine.memory import budget, human, refuse

# What a forward allocates beyond its modules' outputs (oneDNN's scratch buffers), measured on this CPU: 9-12 MiB
# for a small 3D U-Net at any batch; the outputs' sum already overstates a large model's peak about twofold.
SCRATCH = 16 * 1024**2


@dataclass
class WindowEstimate:
    voxels: int  # of the padded image
    channels: int
    classes: int
    slab: int  # voxels of one slab: patch[0] * the other axes
    per_window: int  # activation bytes of one window
    batch: int  # windows run together
    flips: int  # test-time flips beyond the image itself

    def windows(self) -> int:
        return self.per_window * self.batch + SCRATCH

    def float32(self) -> int:
        return (3 + 2 * self.flips) * self.classes * self.voxels * 4 + self.voxels * 4 + self._common()

    def float16(self) -> int:
        slab = (self.classes + 1) * self.slab * 8  # float32 logits and weights, and the transformed copy
        return (1 + 2 * self.flips) * self.classes * self.voxels * 2 + slab + self._common()

    def _common(self) -> int:
        return self.flips * self.channels * self.voxels * 4 + self.windows()

    def to_dict(self) -> dict:
        return {
            "float32": self.float32(),
            "float16": self.float16(),
            "per_window": self.per_window,
        }


_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {window shape: activation_bytes_of}


def activation_bytes(model, window) -> tuple[int, int]:
    """activation_bytes_of, measured once per model and window shape (validation runs it on every case)."""
    known = _MEASURED.setdefault(model, {})
    key = tuple(window.shape)
    if key not in known:
        known[key] = activation_bytes_of(model, window)
    return known[key]


def activation_bytes_of(model, window) -> tuple[int, int]:
    """(bytes of every module output of one forward of `window` (1, C, *P), output channels)."""
    import torch

    kept: dict[int, torch.Tensor] = {}  # held until the end, so no storage is freed and counted twice

    def hook(module, inputs, output):
        for tensor in output if isinstance(output, list | tuple) else [output]:
            if isinstance(tensor, torch.Tensor):
                kept[tensor.untyped_storage().data_ptr()] = tensor

    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        output = model(window)
    finally:
        for handle in handles:
            handle.remove()
    output = output[0] if isinstance(output, list | tuple) else output
    total = sum(t.untyped_storage().nbytes() for t in kept.values())
    return total, int(output.shape[1])


def estimate_window(model, x, *, patch, device, amp: bool, batch: int, flips: int) -> WindowEstimate:
    """For an image x (C, *S) already padded to the patch; the model in eval mode under inference_mode."""
    from medattn.engine.device import autocast

    window = x[(slice(None), *(slice(0, p) for p in patch))][None].to(device)
    with autocast(device, amp):
        per_window, classes = activation_bytes(model, window)
    shape = tuple(x.shape[1:])
    return WindowEstimate(
        voxels=math.prod(shape),
        channels=int(x.shape[0]),
        classes=classes,
        slab=min(patch[0], shape[0]) * math.prod(shape[1:]),
        per_window=per_window,
        batch=batch,
        flips=flips,
    )


def choose_path(estimate: WindowEstimate, shape) -> tuple[str, int, str | None]:
    """("float32" | "float16", windows run together, note or None): float32 when it fits; else float16 slabs, with
    fewer windows at a time if need be; else a refusal naming the estimate."""
    from dataclasses import replace

    have = budget()
    if estimate.float32() <= have.available:
        return "float32", estimate.batch, None
    what = f"sliding-window inference of a {'x'.join(map(str, shape))} image"
    fitting = estimate
    while fitting.batch > 1 and fitting.float16() > have.available:
        fitting = replace(fitting, batch=fitting.batch // 2)
    if fitting.float16() > have.available:
        raise refuse(
            f"{what} (float16 slabs, one window at a time)",
            need=fitting.float16(),
            have=have,
            fix="run it on a machine with more memory, without --tta, or crop the image first",
        )
    note = (
        f"memory: {what} would need about {human(estimate.float32())} in float32, but {human(have.available)} is "
        f"available ({have.source}); accumulating in float16 slabs, {fitting.batch} window(s) at a time, instead "
        f"(about {human(fitting.float16())})"
    )
    return "float16", fitting.batch, note
