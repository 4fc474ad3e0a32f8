"""Translation losses: L1 alone, or L1 plus an adversarial term from a conditional PatchGAN that the loss owns.

`TranslationLoss(model, output, target, device)` is the engine's loss. With an adversarial loss ("lsgan", least
squares as in Mao et al. 2017, or "hinge") each call first updates the discriminator once, on the real target
and the generated one detached from the generator (its own Adam, lr 2e-4, betas 0.5 and 0.999 as in pix2pix),
then returns L1 x L1_WEIGHT + the generator's adversarial term, for the engine to step the generator on. The
discriminator and its optimizer are training state: `state_dict()` / `load_state_dict()` put them in the run's
checkpoint, so a resumed run continues exactly; they are built on the device of the first batch.
"""

from __future__ import annotations

from medattn.config import RunConfig

L1_WEIGHT = 100.0  # pix2pix's lambda: the adversarial term sharpens, L1 keeps the intensities right
DISCRIMINATOR_LR, DISCRIMINATOR_BETAS = 2e-4, (0.5, 0.999)
ADVERSARIAL_LOSSES = ("lsgan", "hinge")


def discriminator_layers(patch: list[int], wanted: int) -> int:
    """At most `wanted` stride-2 layers, leaving the smallest patch side at least 3 for the two final convs."""
    layers = wanted
    while layers > 1 and min(patch) // 2**layers < 3:
        layers -= 1
    return layers


class TranslationLoss:
    def __init__(self, config: RunConfig, data) -> None:
        self.name = config.train.loss
        self.target_channels = data.num_outputs
        self.adversarial = self.name in ADVERSARIAL_LOSSES
        self.discriminator = self.optimizer = None
        self._pending = None
        if self.adversarial:
            from medattn.models.patchgan import PatchDiscriminator

            options = config.model.options
            layers = discriminator_layers(data.extra["translation"].patch, options.get("discriminator_layers", 3))
            self.discriminator = PatchDiscriminator(
                spatial_dims=data.spatial_dims,
                in_channels=data.in_channels + data.num_outputs,
                width=options.get("discriminator_width", 32),
                layers=layers,
            )

    def _ready(self, device) -> None:
        import torch

        if self.optimizer is not None:
            return
        self.discriminator.to(device)
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=DISCRIMINATOR_LR, betas=DISCRIMINATOR_BETAS
        )
        if self._pending is not None:
            self.discriminator.load_state_dict(self._pending["discriminator"])
            self.optimizer.load_state_dict(self._pending["optimizer"])
            self._pending = None

    def base(self, output, target):
        """L1 between a prediction and a target, both standardised (validation's loss)."""
        import torch.nn.functional as F

        return F.l1_loss(output.float(), target.float())

    def __call__(self, model, output, target, device):
        target = target.to(device)
        real, source = target[:, : self.target_channels], target[:, self.target_channels :]
        fake = output.float()
        loss = L1_WEIGHT * self.base(fake, real) if self.adversarial else self.base(fake, real)
        if not self.adversarial:
            return loss
        self._ready(device)
        self.discriminator.requires_grad_(True)
        self.optimizer.zero_grad(set_to_none=True)
        d_real, d_fake = self.discriminator(source, real), self.discriminator(source, fake.detach())
        d_loss = self._discriminator_loss(d_real, d_fake)
        d_loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(False)  # the generator's step must not train the discriminator
        g_adv = self._generator_loss(self.discriminator(source, fake))
        return loss + g_adv

    def _discriminator_loss(self, d_real, d_fake):
        import torch.nn.functional as F

        if self.name == "hinge":
            return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        return 0.5 * ((d_real - 1).square().mean() + d_fake.square().mean())

    def _generator_loss(self, d_fake):
        return -d_fake.mean() if self.name == "hinge" else (d_fake - 1).square().mean()

    # -- checkpointed state (engine/checkpoint.py) -----------------------------------------------------------
    def state_dict(self) -> dict:
        if not self.adversarial:
            return {}
        if self.optimizer is None:  # not stepped yet: the initial weights, and no optimizer state
            return self._pending or {"discriminator": self.discriminator.state_dict(), "optimizer": None}
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not self.adversarial:
            return
        if state.get("optimizer") is None:
            self.discriminator.load_state_dict(state["discriminator"])
            return
        self._pending = state
        self.optimizer = None  # rebuilt on the next call, on that batch's device, with this state
