"""Whole-image inference's memory: the batch of images run together, halved until its activations fit.

The activations of one image are measured by forward hooks on one forward (every module's output held at once: an
upper bound, engine/window_memory.py); a batch of b needs b times that, plus SCRATCH. The
batch here is the engine's own choice (256 by default), so it is halved without asking; an image that does not
fit alone is refused.
"""

from __future__ import annotations

from medattn.engine.memory import budget, human, refuse


def inference_batch(model, x, *, batch_size: int, device, amp: bool) -> int:
    """The batch (at most `batch_size`) whose activations fit what the machine has, for inputs x (N, C, *S)."""
    from medattn.engine.device import autocast
    from medattn.engine.window_memory import SCRATCH, activation_bytes

    with autocast(device, amp):
        per_image, _ = activation_bytes(model, x[:1].to(device))
    have = budget()
    batch = max(min(batch_size, len(x)), 1)
    while batch > 1 and per_image * batch + SCRATCH > have.available:
        batch //= 2
    if per_image * batch + SCRATCH > have.available:
        shape = "x".join(map(str, x.shape[1:]))
        raise refuse(
            f"inference on one {shape} input",
            need=per_image + SCRATCH,
            have=have,
            fix="run it on a machine with more memory, or train a model on smaller inputs (--size)",
        )
    if batch < min(batch_size, len(x)):
        from medattn.progress import console

        console().print(
            f"memory: inference runs {batch} images at a time (about {human(per_image * batch + SCRATCH)} of "
            f"activations; "
            f"{human(have.available)} available, {have.source})"
        )
    return batch
