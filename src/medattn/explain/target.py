"""What one explanation explains: a scalar score of the model's output, chosen by the run's task.

Classification explains a class's logit, regression one output, segmentation the sum of a class's logits over a
region (the predicted one, or a given mask). Faithfulness curves follow `curve`: the class probability, the
output itself, or the class's mean probability over the region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

SQUASH = ("softmax", "sigmoid", "identity")


@dataclass
class Target:
    index: int  # the output channel explained
    name: str  # its name (class or target)
    title: str  # the prediction, for titles and reports
    squash: str = "softmax"  # what `curve` applies to the output: softmax | sigmoid | identity
    region: torch.Tensor | None = None  # dense outputs: (*S) 0/1 on the model's input grid

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """(B,) what gradients explain, from logits (B, K) or (B, K, *S)."""
        return self._reduce(output, mean=False)

    def curve(self, output: torch.Tensor) -> torch.Tensor:
        """(B,) what faithfulness curves follow: the target's probability (or value)."""
        if self.squash == "softmax":
            output = output.softmax(dim=1)
        elif self.squash == "sigmoid":
            output = output.sigmoid()
        return self._reduce(output, mean=True)

    def _reduce(self, output: torch.Tensor, *, mean: bool) -> torch.Tensor:
        channel = output[:, self.index]  # (B,) or (B, *S)
        if channel.ndim == 1:
            return channel
        region = torch.ones_like(channel[0]) if self.region is None else self.region.to(channel)
        total = (channel * region).flatten(1).sum(dim=1)
        return total / region.sum().clamp(min=1) if mean else total

    def crop(self, window: tuple[slice, ...]) -> Target:
        """The target restricted to one window of the image (sliding-window explanations)."""
        return self if self.region is None else replace(self, region=self.region[window])

    @property
    def empty(self) -> bool:
        return self.region is not None and not bool(self.region.any())


def pick_index(names: list[str], given: str | None, *, default: int, where: str) -> int:
    """The index of `given` (a name, or a number) among `names`; `default` when none is given."""
    from medattn.errors import ConfigError

    if given is None:
        return default
    if given in names:
        return names.index(given)
    if given.lstrip("-").isdigit() and 0 <= int(given) < len(names):
        return int(given)
    raise ConfigError(f"--target {given!r} is not one of {where}'s outputs: {', '.join(names)}")
