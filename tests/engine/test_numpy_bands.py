"""#18: the NumPy engine's banded conv and magnitude equal the whole-plane computation they replaced.

The reference below is the previous ``conv_planes``/``_magnitude_fn``, kept here verbatim, and torch's
``conv2d`` as the oracle; the statistics measured band by band equal a whole-array pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from featcli.engine import numpy_backend as nb
from featcli.engine.plan import Planner, PlanOptions
from featcli.enums import Scale
from featcli.kernels.correlate import correlate
from featcli.stages.spec import parse_stage


def _old_conv(x: nb.HWC | np.ndarray, ck, padding, pm) -> np.ndarray:  # type: ignore[no-untyped-def]
    kernels = ck.kernels
    kh, kw = kernels[0].shape
    pt, pb, pl, pr = padding
    _, n_ch, h, w = x.shape
    out_h, out_w = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    n_src = n_ch if ck.mode is nb.KernelMode.DEPTHWISE else 1
    y = np.empty((1, n_src * len(kernels), out_h, out_w), np.float32)
    buf = np.zeros((h + pt + pb, w + pl + pr), np.float32)
    inner = buf[pt : pt + h, pl : pl + w]
    for c in range(n_src):
        nb._source(x, ck.mode, c, inner)
        plane = buf
        if pm is not nb.PaddingMode.ZEROS and (pt or pb or pl or pr):
            plane = np.pad(inner, ((pt, pb), (pl, pr)), mode=nb._NP_PAD[pm])
        for o, k in enumerate(kernels):
            correlate(plane, k.weights, y[0, c * len(kernels) + o])
    return y


def _old_magnitude(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.einsum("nchw,nchw->nhw", x, x)[:, None]
    np.sqrt(out, out=out)
    return out


def _stage(spec: str, shape: tuple[int, int, int, int]):  # type: ignore[no-untyped-def]
    return Planner([parse_stage(spec)], PlanOptions()).plan_for(shape).stages[0]


SPECS = ["conv:w=sobel_x+sobel_y,p=1", "conv:w=sobel_x+sobel_y", "conv:w=gaussian:size=5,p=2,mode=gray",
         "conv:w=laplacian,p=1,mode=depthwise", "conv:w=sobel_x,p=3", "conv:w=sobel_x,p=1,pm=reflect"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("hw", [(5, 7), (97, 61), (700, 300)])
def test_banded_conv_equals_whole_plane_and_torch(spec: str, hw: tuple[int, int]) -> None:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(sum(hw))
    arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    stage = _stage(spec, (1, 3, *hw))
    x = nb.HWC(arr, 255.0, Scale.UNIT)
    got = nb.conv_planes(x, stage.kernels, stage.padding, stage.params.padding_mode)
    want = _old_conv(x, stage.kernels, stage.padding, stage.params.padding_mode)
    np.testing.assert_array_equal(got, want)
    # as a later stage (float planes in, not the image)
    planes = x.planes()
    np.testing.assert_array_equal(nb.conv_planes(planes, stage.kernels, stage.padding, stage.params.padding_mode),
                                  _old_conv(planes, stage.kernels, stage.padding, stage.params.padding_mode))
    if stage.params.padding_mode is nb.PaddingMode.ZEROS and stage.kernels.mode is not nb.KernelMode.DEPTHWISE \
            and stage.kernels.mode is not nb.KernelMode.GRAY:
        w = torch.stack([torch.tensor(k.weights, dtype=torch.float32) for k in stage.kernels.kernels])[:, None]
        w = w.repeat(1, 3, 1, 1)
        pt, pb, pl, pr = stage.padding
        t = F.conv2d(F.pad(torch.from_numpy(planes), (pl, pr, pt, pb)), w)
        np.testing.assert_allclose(got, t.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(3, 4), (333, 500), (1500, 1400)])  # the last on threads
def test_banded_magnitude_and_statistics(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, *hw)).astype(np.float32)
    x[0, :, 0, :2] = 0
    got = nb._magnitude_fn(x)
    np.testing.assert_array_equal(got, _old_magnitude(x))
    (s,) = nb.NumpyBackend.stats(got)
    nb._LAST.y = None
    (ref,) = nb.NumpyBackend.stats(got.copy())
    assert (s.lo, s.hi, s.count, s.zeros, s.ranges) == (ref.lo, ref.hi, ref.count, ref.zeros, ref.ranges)
    assert s.total == pytest.approx(ref.total, rel=1e-5)


def test_conv_statistics_measured_in_bands_equal_a_whole_pass() -> None:
    arr = np.random.default_rng(2).integers(0, 256, (1500, 1400, 3), dtype=np.uint8)  # threads
    stage = _stage("conv:w=sobel_x+sobel_y,p=1", (1, 3, 1500, 1400))
    y = nb.conv_planes(nb.HWC(arr, 255.0, Scale.UNIT), stage.kernels, stage.padding, stage.params.padding_mode)
    (s,) = nb.NumpyBackend.stats(y)
    (ref,) = nb.NumpyBackend.stats(y.copy())
    assert (s.lo, s.hi, s.count, s.zeros, s.ranges) == (ref.lo, ref.hi, ref.count, ref.zeros, ref.ranges)
    assert s.total == pytest.approx(ref.total, rel=1e-5, abs=1e-3)


@pytest.mark.parametrize("spec", ["maxpool:k=2", "avgpool:k=2", "maxpool:k=3", "avgpool:k=3x2", "maxpool:k=3,s=2"])
@pytest.mark.parametrize("hw", [(7, 9), (640, 640)])
def test_pool_equals_the_reshape_reduction_and_torch(spec: str, hw: tuple[int, int]) -> None:
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(4).normal(size=(1, 2, *hw)).astype(np.float32)
    p = _stage(spec, (1, 2, *hw)).params
    got = nb.pool(x, p)
    (kh, kw), (sh, sw) = p.kernel_size, p.stride
    if (kh, kw) == (sh, sw):  # the previous non-overlapping form
        oh, ow = hw[0] // kh, hw[1] // kw
        v = x[:, :, : oh * kh, : ow * kw].reshape(1, 2, oh, kh, ow, kw)
        old = v.max(axis=(3, 5)) if p.kind == "max" else v.mean(axis=(3, 5), dtype=np.float32)
        if p.kind == "max":
            np.testing.assert_array_equal(got, old)
        else:
            np.testing.assert_allclose(got, old, rtol=1e-6, atol=1e-7)
    fn = F.max_pool2d if p.kind == "max" else F.avg_pool2d
    np.testing.assert_allclose(got, fn(torch.from_numpy(x), p.kernel_size, p.stride).numpy(), rtol=1e-6, atol=1e-6)
