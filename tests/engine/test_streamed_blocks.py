"""#18: the streamed peak reduction's block extremes equal ``max_pool2d``'s, and the per-map ranges it
hands the loop equal a whole-band ``amin``/``amax``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featcli.engine.streamed import block_extremes


@pytest.mark.parametrize("shape", [(3, 15, 4080), (2, 7, 11), (1, 31, 33), (4, 1, 1), (2, 45, 30)])
@pytest.mark.parametrize("f", [1, 2, 5, 15])
@pytest.mark.parametrize("channels_last", [False, True])
def test_block_extremes_equal_max_pool(shape: tuple[int, int, int], f: int, channels_last: bool) -> None:
    torch.manual_seed(sum(shape) + f)
    m = torch.randn(shape)
    flat = m.view(-1)
    flat[:: max(1, flat.numel() // 4)] = float("inf")
    flat[1 :: max(1, flat.numel() // 3)] = float("-inf")
    if channels_last:  # what a conv on a channels-last input gives
        m = m.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    lo, hi = block_extremes(m, f)
    want_hi = F.max_pool2d(m[None], f, f, ceil_mode=True)[0]
    want_lo = -F.max_pool2d(-m[None], f, f, ceil_mode=True)[0]
    assert torch.equal(hi, want_hi) and torch.equal(lo, want_lo)
    assert lo.amin(dim=(1, 2)).tolist() == m.amin(dim=(1, 2)).tolist()
    assert hi.amax(dim=(1, 2)).tolist() == m.amax(dim=(1, 2)).tolist()


def test_block_extremes_propagate_nan_like_max_pool() -> None:
    m = torch.zeros(1, 4, 4)
    m[0, 1, 1] = float("nan")
    lo, hi = block_extremes(m, 2)
    want = F.max_pool2d(m[None], 2, 2)[0]
    assert torch.equal(torch.isnan(hi), torch.isnan(want)) and torch.isnan(lo[0, 0, 0])
