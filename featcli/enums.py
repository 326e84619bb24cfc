"""Fixed choices shared by the core modules and the CLI options."""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - exercised on Python 3.10 only

    class StrEnum(str, enum.Enum):
        """Backport of :class:`enum.StrEnum` (3.11+)."""

        def __str__(self) -> str:
            return str(self.value)


class Channels(StrEnum):
    """How many channels the loaded image gets."""

    RGB = "rgb"  #: 3 channels (gray is replicated, CMYK/P/... converted)
    GRAY = "gray"  #: 1 channel, ITU-R 601-2 luma
    KEEP = "keep"  #: the source's own colour channels (L: 1, RGB: 3, CMYK: 4)


class Alpha(StrEnum):
    """What happens to an alpha channel (RGBA, LA, P with transparency)."""

    DROP = "drop"  #: ignore it (default)
    COMPOSITE = "composite"  #: blend over --background
    KEEP = "keep"  #: keep it as an extra, last channel


class Scale(StrEnum):
    """The value range of the float tensor."""

    UNIT = "1"  #: 0..1 (uint8 / 255, uint16 / 65535)
    BYTE = "255"  #: 0..255, as in the classic tutorials

    @property
    def factor(self) -> float:
        return 1.0 if self is Scale.UNIT else 255.0

    def steps(self, value_max: float) -> tuple[float | None, float | None]:
        """The one pixel-scaling rule, ``array / value_max * factor``, as (divisor, multiplier), each None where
        that step is skipped: values already in this range are taken exactly (8-bit pixels at ``255``, float
        pixels at ``1``), and a factor of 1 multiplies nothing. Every conversion of pixels to tensor values
        (the torch tensor, the NumPy engine's planes, training data) follows it.

        >>> Scale.BYTE.steps(255.0), Scale.UNIT.steps(255.0), Scale.BYTE.steps(65535.0)
        ((None, None), (255.0, None), (65535.0, 255.0))
        """
        if value_max == self.factor:
            return None, None
        return value_max, None if self.factor == 1.0 else self.factor


class PaddingMode(StrEnum):
    """torch ``Conv2d(padding_mode=...)``."""

    ZEROS = "zeros"
    REFLECT = "reflect"
    REPLICATE = "replicate"
    CIRCULAR = "circular"


class KernelMode(StrEnum):
    """How a 2-D kernel meets a multi-channel image."""

    SUM = "sum"  #: kernel repeated over input channels and summed: Conv2d(C, n)
    GRAY = "gray"  #: convert to luminance first: Conv2d(1, n)
    DEPTHWISE = "depthwise"  #: each channel on its own: Conv2d(C, n*C, groups=C)


class Resize(StrEnum):
    """How an image meets a network's fixed input size (``--resize``)."""

    CROP = "crop"  #: the short side to the input's, then the centre cut out: no distortion, edges lost
    PAD = "pad"  #: the long side to the input's, then zeros around it: no distortion, nothing lost
    STRETCH = "stretch"  #: both sides to the input's: the whole image, its shapes distorted

    @property
    def words(self) -> str:
        return {"crop": "short side, centre crop", "pad": "long side, zero padding", "stretch": "stretched"}[self.value]


class Interpolation(StrEnum):
    """torch ``Upsample(mode=...)``: the modes of the ``upsample`` stage."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"


class GeluApproximate(StrEnum):
    """torch ``GELU(approximate=...)``: the exact erf form, or the tanh approximation."""

    NONE = "none"
    TANH = "tanh"


class Norm(StrEnum):
    """How feature maps are scaled to colours."""

    PER_MAP = "per-map"
    STAGE = "stage"
    SYMMETRIC = "symmetric"
    PERCENTILE = "percentile"


class Engine(StrEnum):
    """What computes a run's stages."""

    AUTO = "auto"  #: NumPy for the stacks it supports on the CPU (no torch import), else torch
    TORCH = "torch"
    NUMPY = "numpy"


class CamMethod(StrEnum):
    """How ``featcli cam`` weighs a layer's feature maps (docs/cam.md states each formula)."""

    GRADCAM = "gradcam"  #: Selvaraju et al. 2017: each map weighted by its mean gradient
    GRADCAM_PP = "gradcam++"  #: Chattopadhyay et al. 2018: positive gradients weighted per position
    LAYERCAM = "layercam"  #: Jiang et al. 2021: each position weighted by its own positive gradient
    SCORECAM = "scorecam"  #: Wang et al. 2020: each map weighted by the score of the image masked by it

    @property
    def needs_gradients(self) -> bool:
        return self is not CamMethod.SCORECAM


class Stream(StrEnum):
    """Row-band execution of a big last conv stage drawn as a grid (featcli.engine.streamed)."""

    AUTO = "auto"  #: when the conv output would exceed 256 MB
    ON = "on"
    OFF = "off"


class Optimizer(StrEnum):
    """``featcli train --optimizer``: how the weights follow the gradient."""

    ADAM = "adam"  #: torch.optim.Adam
    SGD = "sgd"  #: torch.optim.SGD with momentum 0.9
