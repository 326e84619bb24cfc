"""A deterministic corpus of damaged images, built from the bundled samples (issue #17, "hostile input").

:func:`build_corpus` writes a few hundred files into a folder in about a second: every bundled sample plus
TIFF (raw, LZW, deflate, PackBits, JPEG, CCITT G4, multi-page), GIF (still and animated), JPEG
(baseline, progressive, gray), WebP and APNG sources made with Pillow, each damaged in ways its format
can be damaged: truncation at many offsets, bit flips in the compressed data, PNG chunk lengths and
CRCs, TIFF strip offsets, byte counts and tags, GIF LZW code sizes and sub-blocks, JPEG entropy data and
tables. The same ``seed`` always gives the same bytes. Nothing here decides what a file *should* do:
the tests compare featcli's verdict with Pillow's own.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from featcli.resources import samples_dir

Mutator = Callable[[bytes, random.Random], Iterator[tuple[str, bytes]]]


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset, length, type)`` of each PNG chunk, as far as the structure can be walked."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((pos, length, kind))
        pos += 12 + length
    return out


def with_late_exif(png: bytes, orientation: int) -> bytes:
    """The PNG with an eXIf chunk (orientation tag) inserted just before IEND, i.e. after the pixel data."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + _png_chunk(b"eXIf", exif.tobytes()) + png[iend:]


def interlaced_png(img: Image.Image) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow writes none; its reader handles them apart)."""
    import numpy as np

    a = np.asarray(img.convert("RGB"))
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = a[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", img.width, img.height, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


def sources() -> dict[str, bytes]:
    """Source files by name: the bundled samples and small files of other formats made from them."""
    sd = samples_dir()
    out = {p.name: p.read_bytes() for p in sorted(sd.iterdir()) if p.suffix in (".png", ".jpg")}
    shapes = Image.open(sd / "shapes.png").convert("RGB").resize((80, 60))
    gray = shapes.convert("L")
    bilevel = Image.open(sd / "checkerboard.png").convert("1").resize((64, 64))
    strip = {"strip_size": 80 * 3 * 8}  # 8 rows per strip: several strips to damage
    out["raw.tif"] = _encode(shapes, "TIFF", **strip)
    for comp in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"):
        out[f"{comp}.tif"] = _encode(shapes, "TIFF", compression=comp, **strip)
    out["gray_lzw.tif"] = _encode(gray, "TIFF", compression="tiff_lzw")
    out["g4.tif"] = _encode(bilevel, "TIFF", compression="group4")
    out["pages.tif"] = _encode(shapes, "TIFF", save_all=True, append_images=[gray.convert("RGB")],
                               compression="tiff_lzw")
    out["still.gif"] = _encode(shapes.quantize(64), "GIF")
    frames = [shapes.quantize(32), shapes.rotate(90).quantize(32), gray.convert("P")]
    out["anim.gif"] = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out["progressive.jpg"] = _encode(shapes, "JPEG", progressive=True, quality=85)
    out["gray.jpg"] = _encode(gray, "JPEG", quality=80)
    out["lossy.webp"] = _encode(shapes, "WEBP", quality=70)
    out["lossless.webp"] = _encode(shapes, "WEBP", lossless=True)
    out["anim.png"] = _encode(frames[0].convert("RGB"), "PNG", save_all=True,
                              append_images=[f.convert("RGB") for f in frames[1:]])
    out["late_exif.png"] = with_late_exif(_encode(shapes, "PNG"), 6)
    out["interlaced.png"] = interlaced_png(shapes)
    out["trns.png"] = _encode(shapes.quantize(16), "PNG", transparency=3)
    out["deep.png"] = _encode(gray.point(lambda v: v * 200, "I").convert("I;16"), "PNG")
    return out


# --- generic damage -------------------------------------------------------------------------------------


def truncations(data: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes]]:
    cuts = {8, 16, 33, 60, len(data) // 2, len(data) - 12, len(data) - 1}
    while len(cuts) < n + 7:
        cuts.add(rng.randrange(1, len(data)))
    for cut in sorted(c for c in cuts if 0 < c < len(data)):
        yield f"cut{cut}", data[:cut]


def flips(data: bytes, lo: int, hi: int, rng: random.Random, n: int, bits: int = 3) -> Iterator[tuple[str, bytes]]:
    if hi <= lo:
        return
    for k in range(n):
        b = bytearray(data)
        for _ in range(bits if k % 2 else 1):
            b[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
        yield f"flip{k}", bytes(b)


def _put(data: bytes, pos: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, pos, value)
    return bytes(b)


# --- per format -------------------------------------------------------------------------------------------


def png_damage(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    chunks = png_chunks(data)
    idat = [(o, n) for o, n, k in chunks if k in (b"IDAT", b"fdAT")]
    for o, n in idat[:2]:
        yield from ((f"idat{o}_{name}", d) for name, d in flips(data, o + 8, o + 8 + n, rng, 4))
    for o, n, kind in chunks:
        tag = kind.decode("latin-1")
        if kind in (b"IHDR", b"IDAT", b"PLTE", b"IEND", b"eXIf", b"acTL", b"fcTL") and rng.random() < 0.8:
            yield f"len_{tag}{o}", _put(data, o, ">I", rng.choice([0, n + 1, max(n - 1, 0), n * 3 + 7, 0x7FFFFFF0]))
            yield f"crc_{tag}{o}", _put(data, o + 8 + n, ">I", zlib.crc32(kind) ^ 0x5A5A)
    yield "bad_ihdr_depth", _put(data, 8 + 8 + 8, ">B", 3)
    yield "bad_ihdr_size", _put(data, 8 + 8, ">I", 0x7FFFFFFF)


def _tiff_entries(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """``(entry offset, tag, type, count, value)`` of every IFD entry of a little-endian TIFF."""
    (ifd,) = struct.unpack_from("<I", data, 4)
    seen = set()
    while 0 < ifd < len(data) - 2 and ifd not in seen:
        seen.add(ifd)
        (n,) = struct.unpack_from("<H", data, ifd)
        for i in range(n):
            e = ifd + 2 + 12 * i
            tag, typ, count, value = struct.unpack_from("<HHII", data, e)
            yield e, tag, typ, count, value
        (ifd,) = struct.unpack_from("<I", data, ifd + 2 + 12 * n)


def _tiff_array(data: bytes, typ: int, count: int, entry: int, value: int) -> tuple[int, str]:
    """Where the values of an entry live and their struct format (SHORT or LONG)."""
    size, fmt = (2, "<H") if typ == 3 else (4, "<I")
    return (entry + 8 if size * count <= 4 else value), fmt


def tiff_damage(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    entries = list(_tiff_entries(data))
    first_ifd = [e for e in entries if e[0] < entries[0][0] + 12 * 40]
    by_tag = {tag: (e, typ, count, value) for e, tag, typ, count, value in reversed(first_ifd)}
    offsets = by_tag.get(273)
    counts = by_tag.get(279)
    if offsets and counts:
        where, fmt = _tiff_array(data, offsets[1], offsets[2], offsets[0], offsets[3])
        cwhere, cfmt = _tiff_array(data, counts[1], counts[2], counts[0], counts[3])
        size = 2 if fmt == "<H" else 4
        csize = 2 if cfmt == "<H" else 4
        (start,) = struct.unpack_from(fmt, data, where)
        (nbytes,) = struct.unpack_from(cfmt, data, cwhere)
        yield from ((f"strip_{n}", d) for n, d in flips(data, start, start + nbytes, rng, 6))
        last = offsets[2] - 1
        top = 0xFFFF if size == 2 else 2**31
        yield "strip_past_eof", _put(data, where + size * last, fmt, min(len(data) + 100, top))
        yield "strip_offset_zero", _put(data, where, fmt, 0)
        yield "count_big", _put(data, cwhere, cfmt, min(nbytes * 16 + 999, 0xFFFF if csize == 2 else 2**31))
        yield "count_small", _put(data, cwhere + csize * last, cfmt, 1)
        yield "count_zero", _put(data, cwhere, cfmt, 0)
    for tag, values in ((259, [7, 2, 99, 34712, 32946]), (258, [3, 64, 0]), (277, [5, 0]), (262, [9, 5, 4]),
                        (256, [0, 0xFFFF]), (257, [0, 9999]), (284, [2, 7]), (278, [0, 1])):
        if tag in by_tag:
            e = by_tag[tag][0]
            for v in values:
                yield f"tag{tag}_{v}", _put(data, e + 8, "<H" if by_tag[tag][1] == 3 else "<I", v)
    for e, tag, _typ, _count, _value in rng.sample(first_ifd, min(4, len(first_ifd))):
        yield f"type{tag}", _put(data, e + 2, "<H", rng.choice([0, 13, 99]))
        yield f"count{tag}", _put(data, e + 4, "<I", rng.choice([0, 2**20, 2**31 - 1]))
    if len(entries) > len(first_ifd):  # multi-page: damage the second page only
        e = entries[len(first_ifd)][0]
        yield "page2_entry", data[:e] + bytes(12) + data[e + 12 :]
        (ifd0,) = struct.unpack_from("<I", data, 4)
        (n,) = struct.unpack_from("<H", data, ifd0)
        yield "page2_pointer", _put(data, ifd0 + 2 + 12 * n, "<I", len(data) + 64)


def _gif_image_data(data: bytes) -> list[tuple[int, int]]:
    """``(image descriptor, LZW minimum code size byte)`` offsets of each image in a GIF."""
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    out = []
    while pos < len(data):
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:
            desc, lflags = pos, data[pos + 9]
            pos += 10 + (3 * 2 ** ((lflags & 7) + 1) if lflags & 0x80 else 0)
            out.append((desc, pos))
            pos += 1
        else:
            break
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return out


def gif_damage(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    images = _gif_image_data(data)
    for i, (_desc, start) in enumerate(images[:2]):
        end = images[i + 1][0] if i + 1 < len(images) else len(data) - 1
        yield from ((f"lzw{i}_{n}", d) for n, d in flips(data, start + 2, end, rng, 5))
        for size in (0, 1, 12, 13):
            yield f"codesize{i}_{size}", _put(data, start, "<B", size)
        yield f"subblock{i}", _put(data, start + 1, "<B", 0xFF)
        yield f"subblock{i}_zero", _put(data, start + 1, "<B", 0)
    if images:
        yield "desc_wide", _put(data, images[0][0] + 5, "<H", 0xFFFF)


def jpeg_damage(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    sos = data.find(b"\xff\xda")
    if sos > 0:
        yield from ((f"entropy_{n}", d) for n, d in flips(data, sos + 14, len(data) - 2, rng, 8, bits=6))
        yield "early_eoi", data[: (sos + len(data)) // 2] + b"\xff\xd9"
        yield "rst_junk", data[: sos + 40] + b"\xff\xd3" + data[sos + 40 :]
    for marker in (b"\xff\xc4", b"\xff\xdb", b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            tag = marker[1:].hex()
            yield from ((f"seg{tag}_{n}", d) for n, d in flips(data, at + 4, at + 20, rng, 2))
            yield f"seglen{tag}", _put(data, at + 2, ">H", rng.choice([0, 2, 0xFFFF]))
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    if sof > 0:
        yield "sof_zero_height", _put(data, sof + 5, ">H", 0)
        yield "sof_components", _put(data, sof + 9, ">B", 7)


def riff_damage(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    yield from flips(data, 30, len(data), rng, 6)
    yield "riff_size", _put(data, 4, "<I", len(data) * 4)
    yield "chunk_size", _put(data, 16, "<I", 3)


_BY_EXT: dict[str, Mutator] = {".png": png_damage, ".tif": tiff_damage, ".gif": gif_damage,
                               ".jpg": jpeg_damage, ".webp": riff_damage}


def build_corpus(dest: Path, *, seed: int = 17, truncations_per_file: int = 5, scale: int = 1) -> list[Path]:
    """Write the damaged files (and the intact sources) into ``dest``; returns their paths, sorted.

    ``scale`` repeats the random damage with more variants (the slow test uses 4).
    """
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in sources().items():
        stem, ext = name.rsplit(".", 1)
        ext = "." + ext
        variants: dict[str, bytes] = {"intact": data}
        for rep in range(scale):
            rng = random.Random(f"{seed}:{name}:{rep}")
            damage = list(truncations(data, rng, truncations_per_file)) + list(_BY_EXT[ext](data, rng))
            variants.update((f"{label}_r{rep}" if rep else label, d) for label, d in damage)
        for label, d in variants.items():
            p = dest / f"{stem}_{label}{ext}"
            p.write_bytes(d)
            out.append(p)
    return sorted(out)


if __name__ == "__main__":  # python tests/io/hostile.py DIR: write the corpus for a look by hand
    import sys

    paths = build_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus"))
    print(len(paths), "files")
