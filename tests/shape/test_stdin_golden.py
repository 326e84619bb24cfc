"""``featcli shape -`` answers thousands of varied queries exactly as it always did (byte for byte).

The stdin loop has fast paths of its own (cached stages, integer receptive fields, JSON text assembled from
per-stage fragments); this test pins every answer line to the output of the plain code path. A fixed-seed
generator writes a few thousand queries: random input sizes in every spelling, stacks of every op family with
random keys, solver queries (``p=?``, ``op=?``, targets), branches (save/add/cat, side branches), errors of
the parser and of the walk, comments, blank lines and repeated lines. The golden file
``tests/golden/shape/stdin_digests.txt`` holds one short digest per answer line (the answers themselves
are megabytes); ``pytest --update-golden`` rewrites it, which is only right when an answer is meant to change.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable

from featcli.shape.service import InputResolver, query, serve

SEED, COUNT = 20240614, 4000


def _size(rng: random.Random, hi: int = 4) -> str:
    a = rng.randint(1, hi)
    return str(a) if rng.random() < 0.7 else f"{a}x{rng.randint(1, hi)}"


def _conv(rng: random.Random) -> str:
    keys = []
    if rng.random() < 0.6:
        keys.append(f"out={rng.choice([1, 2, 4, 6, 8, 16, 64])}")
    keys.append(f"k={_size(rng, 7)}")
    if rng.random() < 0.5:
        keys.append(f"s={_size(rng, 3)}")
    r = rng.random()
    if r < 0.35:
        keys.append(f"p={_size(rng, 3)}")
    elif r < 0.45:
        keys.append(f"p={rng.choice(['same', 'valid'])}")
    elif r < 0.55:
        keys.append("p=?" if rng.random() < 0.5 else f"p=?{_size(rng, 40)}")
    if rng.random() < 0.2:
        keys.append(f"d={_size(rng, 3)}")
    if rng.random() < 0.05:
        keys.append(f"g={rng.choice([1, 2, 3])}")
    if rng.random() < 0.1:
        keys.append("bias=0")
    if rng.random() < 0.1:
        keys.append(f"pm={rng.choice(['reflect', 'circular', 'replicate', 'zeros'])}")
    if rng.random() < 0.03:
        return f"conv:w={rng.choice(['sobel_x', 'sobel_x+sobel_y', 'gaussian(size=5,sigma=1)'])},p=1"
    rng.shuffle(keys)
    return "conv:" + ",".join(keys)


def _convt(rng: random.Random) -> str:
    keys = [f"k={_size(rng, 5)}", f"s={_size(rng, 3)}"]
    if rng.random() < 0.5:
        keys.append(f"out={rng.choice([1, 3, 8, 32])}")
    r = rng.random()
    if r < 0.4:
        keys.append(f"p={_size(rng, 2)}")
    elif r < 0.5:
        keys.append("p=?" if rng.random() < 0.5 else f"p=?{_size(rng, 60)}")
    r = rng.random()
    if r < 0.2:
        keys.append(f"op={_size(rng, 2)}")
    elif r < 0.3:
        keys.append("op=?" if rng.random() < 0.5 else f"op=?{_size(rng, 60)}")
    if rng.random() < 0.15:
        keys.append(f"d={_size(rng, 2)}")
    if rng.random() < 0.05:
        keys.append("g=2")
    return "convt:" + ",".join(keys)


def _pool(rng: random.Random) -> str:
    kind = rng.choice(["maxpool", "avgpool", "max", "MaxPool2d"])
    k = rng.randint(1, 4)
    keys = [f"k={k}" if rng.random() < 0.8 else f"k={k}x{rng.randint(1, 4)}"]
    if rng.random() < 0.5:
        keys.append(f"s={_size(rng, 3)}")
    r = rng.random()
    if r < 0.3:
        keys.append(f"p={rng.randint(0, k // 2 + (rng.random() < 0.1))}")
    elif r < 0.4:
        keys.append("p=?" if rng.random() < 0.5 else f"p=?{_size(rng, 30)}")
    if rng.random() < 0.3:
        keys.append(f"ceil={rng.choice(['1', '0', 'true'])}")
    if kind == "avgpool" and rng.random() < 0.2:
        keys.append("cip=0")
    if kind != "avgpool" and rng.random() < 0.15:
        keys.append(f"d={_size(rng, 2)}")
    return f"{kind}:" + ",".join(keys)


_SIMPLE = ["relu", "bn", "sigmoid", "tanh", "abs", "dropout:p=0.25", "leakyrelu:slope=0.2", "prelu", "prelu:n=1",
           "bn:eps=0.001", "softmax", "magnitude", "gap", "gmp", "adaptiveavg:o=3", "adaptivemax:o=2x5",
           "adaptiveavg:o=7"]
_BAD = ["conv:k=0", "conv:q=3", "maxpool", "frobnicate", "conv:k=3,k=4", "linear", "conv:p=-1", "relu:x=1",
        "conv:k=3,,p=1", "add:", "save:a(conv)", "conv:out=99999999999", "maxpool:k=2,p=5", "conv:w=nope_kernel",
        "dropout:p=2", "convt:p=same", "cat:zz", "conv:k=(3", "linear:out=0"]


#: stages that keep H and W (the bodies of residual blocks)
_KEEP = ["conv:k=3,p=1", "conv:k=1", "relu", "bn", "conv:k=3,p=same", "conv:k=5,p=2,bias=0",
         "maxpool:k=3,s=1,p=1", "conv:k=3,p=1,g=1,pm=reflect"]


def _stage(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if r < 0.30:
        return _conv(rng)
    if r < 0.45:
        return _pool(rng)
    if r < 0.53:
        return _convt(rng)
    if r < 0.75:
        return rng.choice(_SIMPLE)
    if r < 0.78:
        return rng.choice(["flatten", f"linear:out={rng.choice([1, 10, 100])}"])
    if r < 0.81:
        return rng.choice(_BAD)
    if depth == 0 and r < 0.97:  # a residual or skip block
        name = rng.choice(["a", "skip", "x1"])
        body = " ".join(_stage(rng, 1) if rng.random() < 0.15 else rng.choice(_KEEP)
                        for _ in range(rng.randint(1, 3)))
        meet = rng.choice(["add", "cat", "add", "residual", "concat"])
        if rng.random() < 0.4:
            side = " ".join(_stage(rng, 1) if rng.random() < 0.15 else rng.choice(_KEEP)
                            for _ in range(rng.randint(1, 2)))
            return f"save:{name} {body} {meet}:{name}({side})"
        return f"save:{name} {body} {meet}:{name}"
    return rng.choice(["relu", "conv:k=1", "maxpool:k=2"])


def _input(rng: random.Random) -> str:
    h, w = rng.randint(1, 512), rng.randint(1, 512) if rng.random() < 0.6 else None
    w = h if w is None else w
    r = rng.random()
    if r < 0.6:
        return f"{rng.choice([1, 1, 2, 8])}x{rng.choice([1, 3, 4, 6, 16, 64])}x{h}x{w}"
    if r < 0.8:
        return f"{rng.choice([1, 3, 8])}x{h}x{w}"
    if r < 0.9:
        return f"{h}x{w}"
    if r < 0.97:
        return rng.choice([f"[1,3,{h},{w}]", f"torch.Size([2,3,{h},{w}])", f"(3,{h},{w})"])
    return rng.choice(["1x3x0x5", "1x3x4x5x6", "missing_image.png", "99999999999x3"])


def queries(seed: int = SEED, count: int = COUNT) -> list[str]:
    """``count`` query lines (with comments, blanks and repeats) from a fixed seed."""
    rng = random.Random(seed)
    lines: list[str] = []
    while len(lines) < count:
        r = rng.random()
        if r < 0.02:
            lines.append(rng.choice(["", "   ", "# a comment", "1x3x32x32 conv:k=3  # trailing comment"]))
            continue
        if r < 0.06 and lines:
            lines.append(rng.choice(lines))  # a repeated query (the answer cache)
            continue
        if r < 0.065:
            lines.append(f"{_input(rng)} @{rng.choice(['lenet5', 'vgg11', 'resnet18', 'unet', 'nosuchstack'])}")
            continue
        stack = " ".join(_stage(rng) for _ in range(rng.randint(0, 5)))
        if rng.random() < 0.3:  # a classifier head
            head = rng.choice(["gap flatten", "flatten", "gap", "adaptiveavg:o=2 flatten"])
            stack += f" {head} linear:out={rng.choice([1, 10, 100])}" + (",bias=0" if rng.random() < 0.2 else "")
        lines.append(f"{_input(rng)} {stack}".rstrip())
    return lines


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()[:16]


def _serve(lines: list[str]) -> tuple[int, list[str]]:
    out = io.StringIO()
    failed = serve(io.BytesIO(("\n".join(lines) + "\n").encode()), out)
    return failed, out.getvalue().splitlines()


def test_stdin_answers_are_byte_identical_to_the_recorded_ones(golden: Callable[[str, str], None]) -> None:
    lines = queries()
    failed, out = _serve(lines)
    asked = [ln for ln in lines if ln.split("#")[0].strip()]
    assert len(out) == len(asked)
    errors = sum(1 for ln in out if ln.startswith('{"error"'))
    assert failed == errors and 400 < errors < len(out) // 2  # a mix: refusals and answers both common
    solved = sum(1 for ln in out if '"solved":{' in ln)
    branches = sum(1 for ln in out if '"op":"add"' in ln or '"op":"cat"' in ln)
    assert solved > 100 and branches > 300, (solved, branches)
    golden("shape/stdin_digests", "".join(f"{n} {_digest(ln)}\n" for n, ln in enumerate(out, 1)))


def test_stdin_answers_equal_the_query_path() -> None:
    """Each answer is what query() reports for its line, through the plain ``json.dumps`` of ``to_dict()``."""
    inputs = InputResolver()
    lines = [ln for ln in queries(seed=5, count=600) if ln.split("#")[0].strip()]
    _, out = _serve(lines)
    for n, (line, got) in enumerate(zip(lines, out, strict=True), 1):
        tokens = line.split("#")[0].split()
        try:
            want = query(inputs, tokens[0], tokens[1:]).to_dict()
        except Exception as exc:  # noqa: BLE001 - the stdin loop reports FeatcliErrors as error lines
            assert json.loads(got)["line"] == n, (line, got, exc)
            continue
        assert got == json.dumps(want, separators=(",", ":"), allow_nan=False), line
