"""A picture as PNG bytes, for a caller that writes somewhere other than a file (``-o -``: stdout).

:func:`encode_png` writes the same text chunks as :func:`featcli.io.png.save_png` (``Software``, the
picture's ``featcli:*`` colour scales, then ``metadata``) and the same 8-bit palette image, so a piped
picture is the file ``save_png`` would write.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from featcli import __version__
from featcli.errors import UsageError


def encode_png(image: Image.Image, metadata: Mapping[str, str] | None = None, *, compress_level: int = 1) -> bytes:
    """``image`` encoded as PNG bytes with text metadata (nothing is written anywhere).

    Args:
        image: a picture of :func:`featcli.render.render_grid`, :func:`featcli.render.render_single` or
            :func:`featcli.render.render_map`.
        metadata: extra text chunks (``featcli:command``, ``featcli:input``, ...), written last.
        compress_level: zlib level 0..9 (1: fast, as ``save_png``).

    >>> from featcli.render import render_map
    >>> encode_png(render_map([[0.0, 1.0]]), {"featcli:input": "x.png"})[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    if not 0 <= compress_level <= 9:
        raise UsageError(f"PNG compress level must be 0..9, got {compress_level}")
    text = {k: str(v) for k, v in image.info.items() if isinstance(k, str) and k.startswith("featcli:")}
    text.setdefault("Software", f"featcli {__version__}")
    text.update(metadata or {})
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level, pnginfo=info)
    return buf.getvalue()
