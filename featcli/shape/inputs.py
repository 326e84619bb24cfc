"""The INPUT of ``featcli shape``: a shape written out, or an image file whose header gives it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featcli.errors import SpecError
from featcli.stages.grammar import looks_like_shape, parse_input_shape

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions


def resolve_input(text: str, opts: LoadOptions | None = None) -> tuple[tuple[int, int, int, int], str | None]:
    """An INPUT argument -> ``((N, C, H, W), source path or None)``.

    Shapes (``NxCxHxW``, ``CxHxW``, ``HxW``) are parsed; anything else is an image file whose size is read
    from its header by :func:`featcli.io.images.probe` with the loading options ``opts``, after a full decode
    that proves the file is an image (``sample:NAME`` names a bundled sample).
    """
    try:
        return parse_input_shape(text), None
    except SpecError:
        if looks_like_shape(text):
            raise
    from featcli.io import images as imageio  # lazily: PIL only when an image is given
    from featcli.resources import resolve_sample

    # verify: decode the pixels too, so a file that cannot be decoded is refused here as in `run` and `info`
    header = imageio.probe(resolve_sample(text), opts, verify=True)
    n, c, h, w = header.tensor_shape
    return (n, c, h, w), text

