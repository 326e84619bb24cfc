"""Class activation maps: the formulas of ``featcli cam``'s methods, on one layer's maps and their gradients.

Every function takes and returns torch tensors; which network and layer give them is
:mod:`featcli.run.camnet`'s business, what is written :mod:`featcli.run.camrun`'s. ``A`` is the layer's
output ``(N, K, h, w)`` (K maps), ``G = dy_c / dA`` the gradient of class c's score (the network's output
before any softmax) with respect to it, and every map is ``ReLU`` of a weighted sum of the ``A_k``:

- Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij G_kij``; ``L = ReLU(sum_k w_k A_k)``.
- Grad-CAM++ (Chattopadhyay et al. 2018: the closed form for an exponential score, as their code and
  pytorch-grad-cam compute it): ``a_kij = G^2 / (2 G^2 + sum_ab A_kab G^3)`` (0 where ``G = 0``),
  ``w_k = sum_ij a_kij ReLU(G_kij)``; ``L = ReLU(sum_k w_k A_k)``.
- LayerCAM (Jiang et al. 2021): ``L = ReLU(sum_k ReLU(G_k) * A_k)`` (each position its own weight).
- Score-CAM (Wang et al. 2020, Algorithm 1): ``H_k`` = ``A_k`` upsampled to the input (bilinear) and scaled
  to 0..1 (min-max; a constant map is 0); ``s_k = y_c(X * H_k)``, the score of the input masked by it;
  ``w = softmax_k(s)``; ``L = ReLU(sum_k w_k A_k)``. No gradient: an ONNX file can give it.

Faithfulness (Chattopadhyay et al. 2018, section 5.1): ``Y`` is the class's softmax probability on the input,
``O`` on the input multiplied by the map (upsampled, min-max scaled to 0..1); *average drop* is
``max(0, Y - O) / Y`` in percent and *increase in confidence* is ``O > Y``, per image (their averages over
images are the paper's figures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featcli.enums import CamMethod

if TYPE_CHECKING:
    import torch

__all__ = ["Faithfulness", "faithfulness", "gradient_cam", "minmax", "peak", "scorecam", "upsample"]

#: scores of masked inputs: ``(B, C, H, W)`` inputs -> ``(B, classes)`` scores, no gradient
ScoreFn = Callable[["torch.Tensor"], "torch.Tensor"]


def gradient_cam(a: torch.Tensor, g: torch.Tensor, method: CamMethod) -> torch.Tensor:
    """The map ``(N, h, w)`` of a gradient method from the layer's maps ``a`` and their gradient ``g``,
    both ``(N, K, h, w)``."""
    import torch

    a, g = a.detach(), g.detach()
    if method is CamMethod.GRADCAM:
        weights = g.mean(dim=(2, 3), keepdim=True)
        return torch.relu((weights * a).sum(dim=1))
    if method is CamMethod.GRADCAM_PP:
        g2 = g * g
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
        alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                            torch.zeros_like(g))
        weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
        return torch.relu((weights * a).sum(dim=1))
    if method is CamMethod.LAYERCAM:
        return torch.relu((torch.relu(g) * a).sum(dim=1))
    raise ValueError(f"{method} is not a gradient method")


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``maps`` ``(..., h, w)`` resized to ``size`` ``(H, W)`` bilinearly (``align_corners=False``)."""
    import torch.nn.functional as F

    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``maps`` ``(..., H, W)`` scaled to 0..1; a constant map becomes 0."""
    import torch

    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(maps))


def scorecam(a: torch.Tensor, x: torch.Tensor, scores: ScoreFn, cls: int, chunk: int = 32) -> torch.Tensor:
    """The Score-CAM map ``(h, w)`` of class ``cls`` from the layer's maps ``a`` ``(1, K, h, w)`` on the input
    ``x`` ``(1, C, H, W)``; the K masked inputs go through ``scores`` ``chunk`` at a time (memory bounded)."""
    import torch

    a = a.detach()[0]
    size = (int(x.shape[2]), int(x.shape[3]))
    s = []
    for lo in range(0, a.shape[0], chunk):
        masks = minmax(upsample(a[lo:lo + chunk].to(x.dtype), size)).to(x.device)
        s.append(scores(x * masks[:, None])[:, cls].to(torch.float64))
    weights = torch.softmax(torch.cat(s), dim=0).to(a.dtype)
    return torch.relu((weights[:, None, None] * a).sum(dim=0))


def peak(cam: torch.Tensor) -> tuple[int, int]:
    """The position ``(y, x)`` of the map's largest value (the first in row order)."""
    flat = int(cam.reshape(-1).argmax())
    return flat // int(cam.shape[-1]), flat % int(cam.shape[-1])


@dataclass(frozen=True)
class Faithfulness:
    """The confidence in a class on the input (``before``) and on the input masked by its map (``after``)."""

    before: float
    after: float

    @property
    def drop(self) -> float:
        """Average drop's term, in percent: ``max(0, Y - O) / Y * 100``."""
        return max(0.0, self.before - self.after) / self.before * 100 if self.before > 0 else 0.0

    @property
    def increase(self) -> bool:
        """Increase in confidence's term: ``O > Y``."""
        return self.after > self.before


def faithfulness(cam: torch.Tensor, x: torch.Tensor, scores: ScoreFn, cls: int) -> Faithfulness:
    """How the class's probability changes when ``x`` ``(1, C, H, W)`` is multiplied by ``cam`` ``(h, w)``
    upsampled and scaled to 0..1."""
    import torch

    mask = minmax(upsample(cam.detach().to(x.dtype), (int(x.shape[2]), int(x.shape[3])))).to(x.device)
    probs = torch.softmax(scores(torch.cat([x, x * mask])).to(torch.float64), dim=1)[:, cls]
    return Faithfulness(float(probs[0]), float(probs[1]))
