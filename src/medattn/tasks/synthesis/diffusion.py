"""The diffusion process: the noise schedule, noising for training, and DDIM sampling with classifier-free guidance.

Training (Ho et al. 2020): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for a uniform step t, and the network
learns with a plain MSE. Its target is the velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho
2022) rather than eps itself: both give x_0 and eps back linearly, but from eps the clean image is
(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), and at the first sampling step sqrt(abar_t) is 5e-5, so any error in
eps is multiplied by 20,000 and the trajectory leaves the data's range; from v it is sqrt(abar_t) x_t -
sqrt(1 - abar_t) v, bounded at every step. The schedule is the cosine one of Nichol & Dhariwal (2021): the linear
schedule destroys a 28-pixel image within the first third of its steps, leaving the rest to learn almost nothing.

Sampling is DDIM's deterministic update (Song et al. 2021) over a short subsequence of the steps, so 50 network
calls make an image instead of 1000. Classifier-free guidance (Ho & Salimans 2022): the model also learned the
unconditional noise (class 0), and eps = eps_uncond + w (eps_cond - eps_uncond) with w > 1 pushes samples toward
their class.
"""

from __future__ import annotations

import math

import torch

STEPS = 1000  # T, the training steps of the forward process
UNCONDITIONAL = 0.1  # share of training items whose class is dropped (learning the unconditional model)


def cosine_alpha_bar(steps: int = STEPS, *, offset: float = 0.008) -> torch.Tensor:
    """abar_t for t = 0..steps-1 (float64): the share of the clean image's variance left at step t."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # clipped: the last steps would otherwise divide by ~0
    return torch.cumprod(1 - betas, dim=0)


def pack(image: torch.Tensor, step: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The denoiser's input (B, C + 2, *S): the image, then constant planes of the step and the class index + 1
    (0: no class). See models/diffusion.py."""
    shape = (image.shape[0], 1, *image.shape[2:])
    planes = [v.to(image.dtype).reshape(-1, *[1] * (image.ndim - 1)).expand(shape) for v in (step, label)]
    return torch.cat([image, *planes], dim=1)


def noised(x0: torch.Tensor, step: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t from x_0 (B, C, *S), steps (B,) and noise like x_0."""
    abar = alpha_bar[step].to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))  # (B, 1, ...)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def velocity(x0: torch.Tensor, step: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The training target v for x_0 (B, C, *S) noised with `noise` at steps (B,)."""
    abar = alpha_bar[step].to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))
    return abar.sqrt() * noise - (1 - abar).sqrt() * x0


def ddim_steps(count: int, steps: int = STEPS) -> list[int]:
    """`count` steps from T - 1 down to 0, evenly spaced (the DDIM subsequence)."""
    if not 1 <= count <= steps:
        raise ValueError(f"sampling steps must be in 1..{steps}, got {count}")
    return sorted({round(v) for v in torch.linspace(steps - 1, 0, count).tolist()}, reverse=True)


@torch.no_grad()
def sample(
    model,
    labels: torch.Tensor,
    *,
    shape: tuple[int, ...],
    steps: int,
    guidance: float,
    clip: tuple[float, float],
    generator: torch.Generator,
    device=None,
) -> torch.Tensor:
    """Images (B, *shape) of class index `labels` (B,) by DDIM; `clip` bounds the predicted clean image to the
    range of the training images (in the model's standardised units), which keeps the early steps from drifting
    out of the data's range."""
    device = device or next(model.parameters()).device
    alpha_bar = cosine_alpha_bar().to(device)
    x = torch.randn((len(labels), *shape), generator=generator).to(device)  # (B, C, *S) pure noise at step T
    conditional = (labels + 1).to(device)
    schedule = ddim_steps(steps)
    for i, step in enumerate(schedule):
        t = torch.full((len(labels),), step, device=device, dtype=torch.long)
        if guidance == 1.0:
            v = model(pack(x, t, conditional)).float()
        else:  # the conditional and unconditional predictions in one batch
            both = model(pack(torch.cat([x, x]), torch.cat([t, t]), torch.cat([conditional, 0 * conditional])))
            v_c, v_u = both.float().chunk(2)
            v = v_u + guidance * (v_c - v_u)
        abar = alpha_bar[step].float()
        x0 = (abar.sqrt() * x - (1 - abar).sqrt() * v).clamp(*clip)
        if i + 1 < len(schedule):
            eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise consistent with the clipped x_0
            previous = alpha_bar[schedule[i + 1]].float()
            x = previous.sqrt() * x0 + (1 - previous).sqrt() * eps
    return x0.cpu()  # (B, C, *S) the clean image predicted at the last step
