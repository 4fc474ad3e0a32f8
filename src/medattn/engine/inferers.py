"""Running a model on whole images or by sliding window, with optional test-time flips: for every task.

`transform` turns the network's output into what is averaged (probabilities for a classifier, the softmax for a
segmenter, the values themselves for a regressor); with `flips`, the mean over the image and its flip along each
listed spatial axis (negative, counted from the end), each output flipped back where it is spatial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from medattn.engine.device import autocast
from medattn.engine.inputs import apply_missing
from medattn.errors import ConfigError
from medattn.progress import console

OVERLAP = 0.5  # sliding window: half-patch overlap, Gaussian blending


def _identity(output):
    return output


def whole_image(
    model,
    x,
    *,
    transform: Callable = _identity,
    batch_size: int = 256,
    device=None,
    amp: bool = False,
    flips: Sequence[int] | None = None,
) -> np.ndarray:
    """(N, K) float64: transform(model(batch)) for a standardised input tensor (N, C, *spatial) (or, for an ONNX
    Runtime network, an array), or for a tuple (images, more inputs aligned on N: a clinical vector per image),
    the flips applying to the images only."""
    if isinstance(x, np.ndarray):
        from medattn.engine import numeric

        return numeric.whole_image(model, x, transform=transform, batch_size=batch_size, flips=flips)
    if isinstance(x, tuple | list) and isinstance(x[0], np.ndarray):
        raise ConfigError(
            "a model's clinical inputs run in the PyTorch network (--backend torch); its ONNX export is the "
            "image-only path (--missing clinical)"
        )
    import torch

    from medattn.engine.batch_memory import inference_batch

    device = device or next(model.parameters()).device
    parts = apply_missing(model, x)
    parts = tuple(parts) if isinstance(parts, tuple | list) else (parts,)
    images = parts[0]
    was_training = model.training
    model.eval()
    views = [None, *(flips or [])]
    chunks = []
    with torch.inference_mode(), autocast(device, amp):
        fits = inference_batch(model, images, batch_size=batch_size, device=device, amp=amp) if len(images) else 1
        for start in range(0, len(images), fits):
            batch, *more = (part[start : start + fits].to(device) for part in parts)
            outputs = [transform(model(batch if a is None else batch.flip(a), *more).float()) for a in views]
            chunks.append(torch.stack(outputs).mean(dim=0).cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float64)


def sliding_window(
    model,
    x,
    *,
    patch: Sequence[int],
    transform: Callable = _identity,
    device,
    amp: bool = False,
    batch: int = 4,
    flips: Sequence[int] | None = None,
):
    """(K, *S) on the CPU: transform(logits) over a whole standardised image x (C, *S), by patches.

    An image smaller than the patch is padded with each channel's minimum (what training padded with) and cropped
    back after. The result is float32 when MONAI's float32 buffers fit the machine (engine/window_memory.py);
    otherwise float16, accumulated slab by slab (engine/slab_window.py), and `transform` must act voxel by voxel.
    An array `x` (the ONNX backend) goes through engine/numeric.py's twin of this window.
    """
    if isinstance(x, np.ndarray):
        from medattn.engine import numeric

        return numeric.sliding_window(
            model, x, patch=patch, transform=transform, overlap=OVERLAP, batch=batch, flips=flips
        )
    import torch
    from monai.inferers import sliding_window_inference

    from medattn.data.patches import crop, pad_values
    from medattn.engine.slab_window import slab_sliding_window
    from medattn.engine.window_memory import choose_path, estimate_window

    x = apply_missing(model, x[None])[0]
    shape = tuple(x.shape[1:])
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    if padded != shape:
        x = crop(x, [0] * len(shape), padded, pad_values(x))
    was_training = model.training
    model.eval()
    views = [None, *(flips or [])]
    total = None
    with torch.inference_mode(), autocast(device, amp):
        estimate = estimate_window(model, x, patch=patch, device=device, amp=amp, batch=batch, flips=len(views) - 1)
        path, windows, note = choose_path(estimate, shape)
        if note:
            console().print(note)
        for axis in views:
            view = x if axis is None else x.flip(axis)
            if path == "float16":
                out = slab_sliding_window(
                    model,
                    view,
                    patch=patch,
                    overlap=OVERLAP,
                    transform=transform,
                    device=device,
                    batch=windows,
                    amp=amp,
                )
            else:
                logits = sliding_window_inference(
                    view[None].to(device),
                    roi_size=tuple(patch),
                    sw_batch_size=batch,
                    predictor=model,
                    overlap=OVERLAP,
                    mode="gaussian",
                )
                out = transform(torch.as_tensor(logits).float())[0].cpu()  # (K, *padded)
            out = out if axis is None else out.flip(axis)
            total = out if total is None else total + out
    model.train(was_training)
    mean = total / len(views) if len(views) > 1 else total
    return mean[(slice(None), *(slice(0, s) for s in shape))]
