"""Kernel library lookups: near-miss suggestions."""

from __future__ import annotations


def test_a_near_miss_is_suggested_once() -> None:
    """#26 (noticed): ``box`` is a kernel and a family; ``box3`` suggested "box or box"."""
    import pytest

    from featcli.errors import KernelError
    from featcli.kernels.refs import resolve

    with pytest.raises(KernelError) as info:
        resolve("box3")
    assert "did you mean box?" in str(info.value) and "box or box" not in str(info.value), str(info.value)
