"""Parametric kernel families: kernels generated from parameters (``gaussian:size=7,sigma=1.5``).

Each :class:`Family` builds a :data:`~featcli.kernels.matrix.Matrix` in plain Python (no numpy, no torch)
from ImageMagick-like parameters, given as ``NAME:k=v,...`` or ``NAME(k=v,...)``; see :data:`FAMILIES`.
:data:`ROTATABLE` names the edge families that are a library kernel rotated by ``angle=``, and
:func:`parse_params` reads the parameter text of any kernel reference.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from featcli.errors import KernelError
from featcli.kernels.matrix import MAX_SIDE, Matrix, parse_norm

Params = Mapping[str, float]


@dataclass(frozen=True)
class Family:
    """A kernel generated from parameters: ``NAME:k=v,...`` or ``NAME(k=v,...)``."""

    name: str
    params: tuple[str, ...]  #: names in positional order (``gaussian:7,1.5`` is size=7, sigma=1.5)
    build: Callable[[Params, str], Matrix]
    description: str
    tags: tuple[str, ...]
    source: str
    example: str
    default_norm: str = "none"

    def signature(self) -> str:
        return f"{self.name}:{','.join(self.params)}"


def _odd_size(p: Params, key: str, fallback: float, *, what: str) -> int:
    size = p.get(key)
    if size is None:
        n = 2 * math.ceil(3 * fallback) + 1
        if n > MAX_SIDE:
            raise KernelError(f"{what}: sigma {fallback:g} needs a {n}x{n} kernel, above {MAX_SIDE}")
        return n
    return _int_param(size, key, what=what, odd=True)


def _int_param(v: float, key: str, *, what: str, odd: bool = False) -> int:
    if v != int(v) or v < 1 or v > MAX_SIDE:
        raise KernelError(f"{what}: {key}={v:g}; expected a whole number from 1 to {MAX_SIDE}")
    if odd and int(v) % 2 == 0:
        raise KernelError(f"{what}: {key}={int(v)} must be odd so the kernel has a centre")
    return int(v)


#: The range of a sigma, lambda or gamma: far past any kernel of MAX_SIDE pixels either way, and inside what
#: the formulas compute in floats (sigma=1e-320 divided by zero, sigma=1e308 overflowed sigma**4).
SCALE_RANGE = (1e-3, 1e4)


def _positive(p: Params, key: str, default: float, *, what: str) -> float:
    v = p.get(key, default)
    if not v > 0:
        raise KernelError(f"{what}: {key}={v:g} must be > 0")
    low, high = SCALE_RANGE
    if not low <= v <= high:
        raise KernelError(f"{what}: {key}={v:g} is outside [{low:g}, {high:g}]")
    return v


def gaussian_1d(size: int, sigma: float) -> tuple[float, ...]:
    """Sampled Gaussian of ``size`` taps, normalised to sum 1 (as ``cv2.getGaussianKernel``)."""
    c = (size - 1) / 2
    g = [math.exp(-((i - c) ** 2) / (2 * sigma * sigma)) for i in range(size)]
    s = math.fsum(g)
    return tuple(v / s for v in g)


def _gaussian(p: Params, what: str) -> Matrix:
    if "sigma" in p:
        sigma = _positive(p, "sigma", 1.0, what=what)
        size = _odd_size(p, "size", sigma, what=what)
    elif "size" in p:
        size = _int_param(p["size"], "size", what=what, odd=True)
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's rule when only the size is given
    else:
        sigma, size = 1.0, 7
    g = gaussian_1d(size, sigma)
    return tuple(tuple(a * b for b in g) for a in g)


def _box(p: Params, what: str) -> Matrix:
    size = _int_param(p.get("size", 3), "size", what=what)
    return tuple((1.0 / (size * size),) * size for _ in range(size))


def _log(p: Params, what: str) -> Matrix:
    sigma = _positive(p, "sigma", 1.4, what=what)
    size = _odd_size(p, "size", sigma, what=what)
    c = (size - 1) / 2
    r2 = [[(i - c) ** 2 + (j - c) ** 2 for j in range(size)] for i in range(size)]
    h = [[math.exp(-v / (2 * sigma * sigma)) for v in row] for row in r2]
    s = math.fsum(v for row in h for v in row)
    h1 = [[hv / s * (rv - 2 * sigma * sigma) / sigma**4 for hv, rv in zip(hr, rr, strict=True)]
          for hr, rr in zip(h, r2, strict=True)]
    mean = math.fsum(v for row in h1 for v in row) / (size * size)
    return tuple(tuple(v - mean for v in row) for row in h1)


def _dog(p: Params, what: str) -> Matrix:
    s1 = _positive(p, "sigma1", 1.0, what=what)
    s2 = _positive(p, "sigma2", 2.0 * s1, what=what)
    if s1 == s2:
        raise KernelError(f"{what}: sigma1 and sigma2 are both {s1:g}; the difference would be all zeros")
    size = _odd_size(p, "size", max(s1, s2), what=what)
    g1, g2 = gaussian_1d(size, s1), gaussian_1d(size, s2)
    return tuple(tuple(g1[i] * g1[j] - g2[i] * g2[j] for j in range(size)) for i in range(size))


def _gabor(p: Params, what: str) -> Matrix:
    theta = math.radians(p.get("theta", 0.0))
    sigma = _positive(p, "sigma", 2.0, what=what)
    lam = _positive(p, "lambda", 6.0, what=what)
    gamma = _positive(p, "gamma", 0.5, what=what)
    psi = math.radians(p.get("psi", 0.0))
    c, s = math.cos(theta), math.sin(theta)
    sx, sy = sigma, sigma / gamma
    if "size" in p:
        xmax = ymax = _int_param(p["size"], "size", what=what, odd=True) // 2
    else:  # cv2.getGaborKernel's extent when ksize <= 0: 3 standard deviations
        xmax = max(round(max(abs(3 * sx * c), abs(3 * sy * s))), 1)
        ymax = max(round(max(abs(3 * sx * s), abs(3 * sy * c))), 1)
        if 2 * max(xmax, ymax) + 1 > MAX_SIDE:
            raise KernelError(f"{what}: sigma={sigma:g}, gamma={gamma:g} need more than {MAX_SIDE} pixels")
    ex, ey = -0.5 / (sx * sx), -0.5 / (sy * sy)
    grid = [[0.0] * (2 * xmax + 1) for _ in range(2 * ymax + 1)]
    for y in range(-ymax, ymax + 1):
        for x in range(-xmax, xmax + 1):
            xr, yr = x * c + y * s, -x * s + y * c
            # Stored flipped, as OpenCV does, so the result equals cv2.getGaborKernel exactly.
            envelope = math.exp(ex * xr * xr + ey * yr * yr)
            grid[ymax - y][xmax - x] = envelope * math.cos(2 * math.pi / lam * xr + psi)
    return tuple(tuple(row) for row in grid)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("gaussian", ("size", "sigma"), _gaussian,
               "Gaussian blur, sampled and normalised to sum 1 (size defaults to 2*ceil(3*sigma)+1)",
               ("blur", "smooth", "lowpass"), "as cv2.getGaussianKernel, outer product",
               "gaussian:size=7,sigma=1.5", "sum"),
        Family("box", ("size",), _box, "Box (mean) blur of size x size", ("blur", "smooth", "lowpass"),
               "moving average", "box:size=5", "sum"),
        Family("log", ("sigma", "size"), _log,
               "Laplacian of Gaussian, zero-sum, negative centre (blob / zero-crossing edge detector)",
               ("edge", "laplacian", "second-derivative", "blob"),
               "Marr & Hildreth (1980); formula of MATLAB fspecial('log')", "log:sigma=1.4"),
        Family("dog", ("sigma1", "sigma2", "size"), _dog,
               "Difference of Gaussians G(sigma1) - G(sigma2), zero-sum, band-pass",
               ("edge", "bandpass", "blob"), "Marr & Hildreth (1980); Lowe (2004)", "dog:sigma1=1,sigma2=2"),
        Family("gabor", ("theta", "sigma", "lambda", "gamma", "psi", "size"), _gabor,
               "Gabor filter: theta and psi in degrees, lambda the wavelength in pixels",
               ("texture", "orientation", "bandpass"),
               "Gabor (1946); Daugman (1985); equals cv2.getGaborKernel with radians(theta), radians(psi)",
               "gabor:theta=45,sigma=2,lambda=6"),
    )
}
#: Edge families: the library kernel at angle 0, rotated by ``angle`` (multiples of 45, clockwise).
ROTATABLE = {"sobel": "sobel_x", "prewitt": "prewitt_x", "scharr": "scharr_x", "kirsch": "kirsch_e"}
#: Options every kernel accepts after its name (``sobel_x:norm=signed``, ``gaussian5(angle=90)``).
COMMON_OPTIONS = ("angle", "norm")


def parse_params(text: str, names: tuple[str, ...], *, what: str) -> tuple[dict[str, float], dict[str, str]]:
    """Parse ``k=v,k=v`` (or positional values in ``names`` order) into numeric params and options.

    Returns ``(params, options)`` where options holds ``norm`` (a word) and ``angle`` is numeric.
    """
    params: dict[str, float] = {}
    options: dict[str, str] = {}
    known = (*names, *COMMON_OPTIONS)
    text = text.strip()
    if not text:
        return params, options
    keyword_seen = False
    for pos, item in enumerate(text.split(",")):
        item = item.strip()
        if "=" in item:
            key, _, raw = item.partition("=")
            key, raw = key.strip().lower(), raw.strip()
            keyword_seen = True
        elif not keyword_seen and pos < len(names):
            key, raw = names[pos], item
        else:
            raise KernelError(f"{what}: {item!r} needs a name (key=value); parameters: {', '.join(known)}")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise KernelError(f"{what}: unknown parameter {key!r}{hint}; parameters: {', '.join(known)}")
        if key in params or key in options:
            raise KernelError(f"{what}: parameter {key!r} given twice")
        if key == "norm":
            options[key] = parse_norm(raw, what=what)
            continue
        try:
            val = float(raw)
        except ValueError:
            raise KernelError(f"{what}: {key}={raw!r} is not a number") from None
        if not math.isfinite(val):
            raise KernelError(f"{what}: {key}={raw} must be finite")
        params[key] = val
    return params, options
