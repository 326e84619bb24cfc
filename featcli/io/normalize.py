"""Per-channel normalisation of an input, after ``--scale``: ``(x - mean[c]) / std[c]`` (``--normalize``).

Pretrained networks expect it: ImageNet's statistics for most torch models, CLIP's for CLIP, ``0.5`` for
models trained on ``[-1, 1]`` inputs. A preset or ``MEAN,STD`` (one value each, or one per channel joined by
``/``).

>>> Normalize.parse("imagenet").mean
(0.485, 0.456, 0.406)
>>> Normalize.parse("0.5,0.25").record()
{'mean': [0.5], 'std': [0.25]}
>>> Normalize.parse("0.1/0.2/0.3,1/1/2").std
(1.0, 1.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featcli.errors import UsageError

__all__ = ["PRESETS", "Normalize"]

#: Named statistics (values on the 0..1 scale): where each comes from is in the help text.
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision, timm
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # OpenAI CLIP
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [-1, 1]: Inception, many GANs and TF ports
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ((0.1307,), (0.3081,)),
}
HELP = ("Subtract a per-channel mean and divide by a std after --scale: imagenet (torchvision, timm), clip, "
        "inception ([-1, 1]), cifar10, mnist, or MEAN,STD (one value, or one per channel joined by /: "
        "0.485/0.456/0.406,0.229/0.224/0.225).")


@dataclass(frozen=True)
class Normalize:
    """A mean and a std per channel (or one for every channel)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> Normalize:
        """A preset name or ``MEAN,STD``; a usage error naming the presets otherwise."""
        key = text.strip().lower()
        if key in PRESETS:
            return cls(*PRESETS[key], name=key)
        mean, sep, std = text.partition(",")
        try:
            if not sep:
                raise ValueError
            norm = cls(tuple(float(v) for v in mean.split("/")), tuple(float(v) for v in std.split("/")))
        except ValueError:
            raise UsageError(f"--normalize {text!r}: expected {', '.join(PRESETS)} or MEAN,STD "
                             "(e.g. 0.5,0.5 or 0.485/0.456/0.406,0.229/0.224/0.225)") from None
        norm.check(f"--normalize {text!r}")
        return norm

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], what: str) -> Normalize:
        """The normalisation a model file records (:meth:`record`); ``ValueError`` naming ``what`` if invalid."""
        try:
            norm = cls(tuple(float(v) for v in rec["mean"]), tuple(float(v) for v in rec["std"]),
                       rec.get("name") if isinstance(rec.get("name"), str) else None)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{what}: normalize is not {{'mean': [...], 'std': [...]}}") from None
        norm.check(what)
        return norm

    def check(self, what: str) -> None:
        sizes = (len(self.mean), len(self.std))
        if not all(1 <= n <= 64 for n in sizes) or (sizes[0] != sizes[1] and 1 not in sizes):
            raise UsageError(f"{what}: the mean and the std need one value each, or one per channel")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or any(v <= 0 for v in self.std):
            raise UsageError(f"{what}: the values must be finite and every std above 0")

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std)}
        return {**rec, "name": self.name} if self.name else rec

    def __str__(self) -> str:
        return self.name or f"{'/'.join(f'{v:g}' for v in self.mean)},{'/'.join(f'{v:g}' for v in self.std)}"

    def per_channel(self, channels: int) -> tuple[list[float], list[float]]:
        """The mean and std of each of ``channels`` channels, or a usage error when they do not fit."""
        n = max(len(self.mean), len(self.std))
        if n not in (1, channels):
            raise UsageError(f"--normalize {self}: {n} channel values for an input of {channels} channel"
                             f"{'s' if channels != 1 else ''}{' (--channels rgb gives 3)' if channels == 1 else ''}")
        return ([self.mean[0]] * channels if len(self.mean) == 1 else list(self.mean),
                [self.std[0]] * channels if len(self.std) == 1 else list(self.std))

    def apply(self, x: Any) -> Any:
        """``x`` (``(N, C, H, W)`` float32, a NumPy array or a torch tensor) normalised, a new array or tensor."""
        mean, std = self.per_channel(int(x.shape[1]))
        if hasattr(x, "detach"):
            import torch

            m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            return (x - m).div_(s)
        import numpy as np

        out = x - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        out /= np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        return out
