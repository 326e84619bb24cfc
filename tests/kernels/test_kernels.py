"""The kernel library, references, families and the conv-weight contracts (exact, hand-written values)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featcli.enums import KernelMode
from featcli.errors import KernelError, ShapeError
from featcli.kernels import Kernel, conv_weight, conv_weight_shape, expand, library, list_kernels, matrix, resolve
from featcli.kernels import families as kf

# Hand-written reference values, cross-correlation convention (no flip), row 0 on top.
EXPECTED: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "scharr_x": [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]],
    "scharr_y": [[-3, -10, -3], [0, 0, 0], [3, 10, 3]],
    "prewitt_x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "prewitt_y": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "roberts_x": [[-1, 0], [0, 1]],
    "roberts_y": [[0, -1], [1, 0]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "log": [[0, 0, 1, 0, 0], [0, 1, 2, 1, 0], [1, 2, -16, 2, 1], [0, 1, 2, 1, 0], [0, 0, 1, 0, 0]],
    "box": [[1 / 9] * 3] * 3,
    "gaussian3": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "gaussian5": [[a * b / 256 for b in (1, 4, 6, 4, 1)] for a in (1, 4, 6, 4, 1)],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "kirsch_n": [[5, 5, 5], [-3, 0, -3], [-3, -3, -3]],
    "kirsch_ne": [[-3, 5, 5], [-3, 0, 5], [-3, -3, -3]],
    "kirsch_e": [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]],
    "kirsch_se": [[-3, -3, -3], [-3, 0, 5], [-3, 5, 5]],
    "kirsch_s": [[-3, -3, -3], [-3, 0, -3], [5, 5, 5]],
    "kirsch_sw": [[-3, -3, -3], [5, 0, -3], [5, 5, -3]],
    "kirsch_w": [[5, -3, -3], [5, 0, -3], [5, -3, -3]],
    "kirsch_nw": [[5, 5, -3], [5, 0, -3], [-3, -3, -3]],
}


def _close(a: object, b: list[list[float]], tol: float = 1e-12) -> bool:
    rows = list(a)  # type: ignore[call-overload]
    return len(rows) == len(b) and all(
        len(r) == len(e) and all(abs(x - y) <= tol for x, y in zip(r, e, strict=True))
        for r, e in zip(rows, b, strict=True)
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_kernel_exact(name: str) -> None:
    k = resolve(name)
    assert k.name == name
    assert _close(k.weights, EXPECTED[name]), k.weights
    assert k.description and k.tags and k.source


def test_library_has_every_named_kernel_and_nothing_untested() -> None:
    assert set(library()) == set(EXPECTED)


def test_kernel_properties() -> None:
    s = resolve("sobel_x")
    assert s.shape == (3, 3) and s.sum == 0 and s.min == -2 and s.max == 2
    assert s.is_zero_sum and s.is_separable
    assert s.factors == ((1.0, 2.0, 1.0), (-1.0, 0.0, 1.0))
    assert not resolve("emboss").is_separable
    assert not resolve("laplacian").is_separable
    assert resolve("gaussian5").is_separable and not resolve("gaussian5").is_zero_sum
    assert math.isclose(resolve("box").sum, 1.0)
    assert resolve("box").normalisation == "sum"
    d = s.as_dict()
    assert d["weights"][0] == [-1, 0, 1] and d["zero_sum"] is True and d["separable"] is True


def test_kernel_dataclass_validates() -> None:
    with pytest.raises(KernelError, match="not rectangular"):
        Kernel("k", ((1.0, 2.0), (3.0,)))
    with pytest.raises(KernelError, match="empty"):
        Kernel("k", ())
    k = Kernel("k", [[1, 2]])  # type: ignore[arg-type]
    assert k.weights == ((1.0, 2.0),)


def test_tag_filter() -> None:
    edge = {k.name for k in list_kernels(tag="edge")}
    assert {"sobel_x", "kirsch_n", "laplacian"} <= edge and "box" not in edge
    assert {k.name for k in list_kernels(tag="blur")} == {"box", "gaussian3", "gaussian5"}


# --- references ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ref",
    ["[[1,0,-1],[2,0,-2],[1,0,-1]]", "[[1, 0, -1], [2, 0, -2], [1, 0, -1]]", "1 0 -1; 2 0 -2; 1 0 -1",
     "1,0,-1;2,0,-2;1,0,-1", "[[1 0 -1] [2 0 -2] [1 0 -1]]", " 1 0 -1 ; 2 0 -2 ; 1 0 -1 ; "],
)
def test_inline_forms(ref: str) -> None:
    k = resolve(ref)
    assert k.weights == ((1, 0, -1), (2, 0, -2), (1, 0, -1))
    assert k.name == "inline3x3" and k.origin == "inline"


def test_inline_single_row_and_decimals() -> None:
    assert resolve("0.25 .5 0.25").weights == ((0.25, 0.5, 0.25),)
    assert resolve("[[1e-1],[-2.5E0]]").weights == ((0.1,), (-2.5,))


@pytest.mark.parametrize(
    ("ref", "msg"),
    [
        ("[[1,2],[3]]", "not rectangular"),
        ("1 2; 3", "not rectangular"),
        ("[1,2,1]", "list of rows"),
        ("[[1,x]]", "list of rows|not a number"),
        ("[[nan]]", "finite"),
        ("1 inf", "finite"),
        ("[[]]", "empty"),
        (";", "empty"),
        ("", "empty kernel reference"),
        ("   ", "empty kernel reference"),
        ("1 " * 300, "at most 255"),
        (";".join(["1"] * 300), "at most 255"),
    ],
)
def test_inline_refused(ref: str, msg: str) -> None:
    with pytest.raises(KernelError, match=msg):
        resolve(ref)


def test_unknown_name_suggests() -> None:
    with pytest.raises(KernelError) as exc:
        resolve("sobel_q")
    text = str(exc.value)
    assert text.startswith("kernel 'sobel_q' not found (did you mean sobel, sobel_x or sobel_y?); known: ")
    assert "sobel_x" in text and "did you mean" in text
    assert exc.value.exit_code == 1


def test_names_case_insensitive() -> None:
    assert resolve("Sobel_X").weights == resolve("sobel_x").weights


@pytest.mark.parametrize(
    ("colon", "paren"),
    [
        ("gaussian:size=7,sigma=1.5", "gaussian(size=7,sigma=1.5)"),
        ("gaussian:7,1.5", "gaussian(size=7, sigma=1.5)"),
        ("box:size=5", "box(5)"),
        ("log:sigma=1.4", "log(sigma=1.4)"),
        ("dog:sigma1=1,sigma2=2", "dog(1,2)"),
        ("gabor:theta=45,sigma=2,lambda=6", "gabor(theta=45, sigma=2, lambda=6)"),
        ("sobel:angle=45", "sobel(angle=45)"),
        ("sobel_x:norm=signed", "sobel_x(norm=signed)"),
    ],
)
def test_both_spec_forms(colon: str, paren: str) -> None:
    a, b = resolve(colon), resolve(paren)
    assert a.weights == b.weights and a.name == b.name


def test_gaussian_family() -> None:
    k = resolve("gaussian:size=3,sigma=1")
    e = math.exp(-0.5)
    g = [e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)]
    assert _close(k.weights, [[a * b for b in g] for a in g])
    assert math.isclose(k.sum, 1.0) and k.is_separable
    assert resolve("gaussian:sigma=1").shape == (7, 7)  # 2*ceil(3*sigma)+1
    assert resolve("gaussian").shape == (7, 7)
    # OpenCV's rule when only the size is given: sigma = 0.3*((size-1)/2 - 1) + 0.8
    assert resolve("gaussian:size=5").weights == resolve("gaussian:size=5,sigma=1.1").weights


def test_box_family() -> None:
    assert _close(resolve("box:size=2").weights, [[0.25, 0.25], [0.25, 0.25]])
    assert resolve("box:size=5").shape == (5, 5)
    assert math.isclose(resolve("box:size=5").sum, 1.0)


def test_log_family_matches_fspecial_formula() -> None:
    k = resolve("log:sigma=0.5,size=3")
    s = 0.5
    h = [[math.exp(-(i * i + j * j) / (2 * s * s)) for j in (-1, 0, 1)] for i in (-1, 0, 1)]
    tot = sum(map(sum, h))
    h1 = [[h[a][b] / tot * ((a - 1) ** 2 + (b - 1) ** 2 - 2 * s * s) / s**4 for b in range(3)]
          for a in range(3)]
    mean = sum(map(sum, h1)) / 9
    assert _close(k.weights, [[v - mean for v in r] for r in h1], 1e-12)
    assert k.is_zero_sum and k.weights[1][1] < 0
    assert resolve("log:sigma=1.4").shape == (11, 11)


def test_dog_family() -> None:
    k = resolve("dog:sigma1=1,sigma2=2,size=5")
    g1, g2 = kf.gaussian_1d(5, 1.0), kf.gaussian_1d(5, 2.0)
    assert _close(k.weights, [[g1[i] * g1[j] - g2[i] * g2[j] for j in range(5)] for i in range(5)])
    assert k.is_zero_sum and k.weights[2][2] > 0
    assert resolve("dog:sigma1=1,sigma2=2").shape == (13, 13)


def test_gabor_family_theta0() -> None:
    k = resolve("gabor:theta=0,sigma=1,lambda=4,gamma=1,size=3")
    # OpenCV stores the kernel flipped: row 0 is y = +1, column 0 is x = +1.
    expect = [[math.exp(-(x * x + y * y) / 2) * math.cos(math.pi / 2 * x) for x in (1, 0, -1)]
              for y in (1, 0, -1)]
    assert _close(k.weights, expect)


def test_rotation() -> None:
    assert resolve("sobel:angle=0").weights == resolve("sobel_x").weights
    assert resolve("sobel:angle=90").weights == resolve("sobel_y").weights
    assert resolve("sobel:angle=45").weights == ((-2, -1, 0), (-1, 0, 1), (0, 1, 2))
    assert _close(resolve("sobel:angle=180").weights, [[-v for v in r] for r in EXPECTED["sobel_x"]])
    assert resolve("prewitt:angle=90").weights == resolve("prewitt_y").weights
    assert resolve("scharr:angle=-270").weights == resolve("scharr_y").weights
    compass = ["e", "se", "s", "sw", "w", "nw", "n", "ne"]
    for i, d in enumerate(compass):
        assert resolve(f"kirsch:angle={45 * i}").weights == resolve(f"kirsch_{d}").weights
    assert resolve("roberts_x:angle=90").weights == resolve("roberts_y").weights
    assert resolve("sobel").weights == resolve("sobel_x").weights
    assert "rotated 45" in resolve("sobel:angle=45").description


@pytest.mark.parametrize(
    ("ref", "msg"),
    [
        ("sobel:angle=30", "multiples of 45"),
        ("roberts_x:angle=45", "needs a 3x3"),
        ("gaussian5:angle=45", "needs a 3x3"),
        ("gaussian:size=4", "must be odd"),
        ("gaussian:size=0", "whole number"),
        ("gaussian:size=2.5", "whole number"),
        ("gaussian:size=999", "from 1 to 255"),
        ("gaussian:sigma=-1", "> 0"),
        ("gaussian:sigma=100", "above 255"),
        ("gaussian:sigm=1", "unknown parameter 'sigm' \\(did you mean sigma\\?\\)"),
        ("gaussian:sigma=abc", "not a number"),
        ("gaussian:sigma=nan", "finite"),
        ("gaussian:size=3,size=5", "twice"),
        ("gaussian:size=3,1", "needs a name"),
        ("box:1,2", "needs a name"),
        ("dog:sigma1=2,sigma2=2", "all zeros"),
        ("sobel_x:norm=bogus", "norm='bogus'"),
        ("sobel_x:norm=sum", "sums to zero"),
        ("sobel_q:angle=90", "not found"),
        ("sobel_x:size=3", "unknown parameter"),
    ],
)
def test_spec_refused(ref: str, msg: str) -> None:
    with pytest.raises(KernelError, match=msg):
        resolve(ref)


def test_norm_option() -> None:
    s = resolve("sobel_x:norm=1")
    assert _close(s.weights, [[-0.25, 0, 0.25], [-0.5, 0, 0.5], [-0.25, 0, 0.25]])
    assert s.normalisation == "signed"
    assert _close(resolve("sharpen:norm=sum").weights, EXPECTED["sharpen"])
    assert resolve("gaussian3:norm=none").normalisation == "none"
    assert _close(resolve("emboss:norm=signed").weights,
                  [[-0.5, -0.25, 0], [-0.25, 0.2, 0.2], [0, 0.2, 0.4]])
    assert matrix.normalise(((1.0, 2.0, 1.0),), "auto", what="k") == ((0.25, 0.5, 0.25),)
    assert resolve("gaussian:size=5,sigma=1,norm=0").normalisation == "none"


# --- files and the user folder -------------------------------------------------------------------------
def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "my_edge.txt"
    p.write_text("# a comment\n-1 0 1\n-2, 0, 2  # trailing\n\n-1 0 1\n")
    k = resolve(str(p))
    assert k.name == "my_edge" and k.weights == resolve("sobel_x").weights and k.origin == str(p)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n")
    with pytest.raises(KernelError, match="not rectangular"):
        resolve(str(bad))
    with pytest.raises(KernelError, match="not found"):
        resolve(str(tmp_path / "missing.txt"))


def test_npy_file(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    p = tmp_path / "k.npy"
    np.save(p, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]))  # integers: a hand-written kernel
    assert resolve(str(p)).weights == ((1, 2, 1), (0, 0, 0), (-1, -2, -1))
    stack = tmp_path / "stack.npy"
    np.save(stack, np.stack([np.eye(3), -np.eye(3)]).astype(np.float16))
    ks = expand(str(stack))
    assert isinstance(ks, list) and [k.name for k in ks] == ["stack[0]", "stack[1]"]
    with pytest.raises(KernelError, match="holds 2 kernels"):
        resolve(str(stack))
    cplx = tmp_path / "c.npy"
    np.save(cplx, np.ones((3, 3), dtype=np.complex64))
    with pytest.raises(KernelError, match="real numbers"):
        resolve(str(cplx))


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_toml_file_single_and_multi(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.toml", 'name = "ridge"\nweights = [[-1, 2, -1]]\ntags = ["edge"]\n')
    assert resolve(str(one)).weights == ((-1, 2, -1),)
    many = _write(tmp_path / "many.toml", '[[kernel]]\nname = "a"\nweights = [[1]]\n'
                  '[[kernel]]\nname = "b"\nweights = [[2, 2]]\nnormalisation = "sum"\n')
    assert resolve(f"{many}:b").weights == ((0.5, 0.5),)
    with pytest.raises(KernelError, match="pick one"):
        resolve(str(many))


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ('name = "Bad-Name"\nweights = [[1]]\n', "must match"),
        ('name = "k"\n', "no weights"),
        ('name = "k"\nweights = [[1]]\ncolour = "red"\n', "unknown keys"),
        ('name = "k"\nweights = [[1, 2], [3]]\n', "not rectangular"),
        ('name = "k"\nweights = [[1, "x"]]\n', "not a number"),
        ('name = "k"\nweights = [[1]]\ntags = "edge"\n', "list of strings"),
        ('name = "k"\nweights = [[1]]\nnormalisation = "auto"\n', "none, sum or signed"),
        ('name = "k"\nweights = [[1, -1]]\nnormalisation = "sum"\n', "sums to zero"),
        ("name = = 1\n", "invalid TOML"),
    ],
)
def test_toml_refused(tmp_path: Path, body: str, msg: str) -> None:
    with pytest.raises(KernelError, match=msg):
        resolve(str(_write(tmp_path / "k.toml", body)))


def test_user_kernels_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    _write(tmp_path / "mine.toml", 'name = "ridge"\nweights = [[-1, 2, -1]]\ndescription = "d2/dx2"\n')
    _write(tmp_path / "diag.txt", "1 0\n0 -1\n")
    np.save(tmp_path / "cross.npy", np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]))
    d = str(tmp_path)
    assert resolve("ridge", kernels_dir=d).origin.endswith("mine.toml")
    assert resolve("diag", kernels_dir=d).weights == ((1, 0), (0, -1))
    assert resolve("cross", kernels_dir=d).sum == 5
    assert "sobel_x" in library(d)  # adds to the built-in set
    with pytest.raises(KernelError, match="not found"):
        resolve("ridge")
    monkeypatch.setenv("FEATCLI_KERNELS_DIR", d)
    assert resolve("ridge").weights == ((-1, 2, -1),)
    assert resolve("ridge:angle=90").weights == ((-1,), (2,), (-1,))
    monkeypatch.delenv("FEATCLI_KERNELS_DIR")
    with pytest.raises(KernelError, match="does not exist"):
        resolve("ridge", kernels_dir=str(tmp_path / "nope"))


@pytest.mark.parametrize("clash", ["sobel_x", "gaussian", "sobel"])
def test_user_kernel_cannot_shadow(tmp_path: Path, clash: str) -> None:
    _write(tmp_path / "k.toml", f'name = "{clash}"\nweights = [[1]]\n')
    with pytest.raises(KernelError, match="defined twice"):
        resolve("box", kernels_dir=str(tmp_path))


# --- the contracts of shapes.py and featcli run ---------------------------------------------------------
def test_conv_weight_shape_modes() -> None:
    refs = ["sobel_x", "sobel_y"]
    assert conv_weight_shape(refs, 3, KernelMode.SUM) == (2, 3, 3, 3, 1)
    assert conv_weight_shape(refs, 3, KernelMode.GRAY) == (2, 1, 3, 3, 1)
    assert conv_weight_shape(refs, 3, KernelMode.DEPTHWISE) == (6, 1, 3, 3, 3)
    assert conv_weight_shape(["gaussian:size=7,sigma=1.5"], 1, KernelMode.SUM) == (1, 1, 7, 7, 1)
    assert conv_weight_shape("sobel_x", 4, "depthwise") == (4, 1, 3, 3, 4)  # type: ignore[arg-type]


def test_mixed_sizes_are_centred() -> None:
    assert conv_weight_shape(["sobel_x", "gaussian5", "identity"], 3, KernelMode.SUM) == (3, 3, 5, 5, 1)
    cw = conv_weight(["sobel_x", "gaussian5"], 1, KernelMode.SUM)
    assert cw.weight.shape == (2, 1, 5, 5)
    padded = cw.weight[0, 0].tolist()
    assert padded[0] == [0] * 5 and padded[4] == [0] * 5 and [r[0] for r in padded] == [0] * 5
    assert [r[1:4] for r in padded[1:4]] == EXPECTED["sobel_x"]
    assert conv_weight_shape(["roberts_x", "box:size=4"], 1, KernelMode.SUM) == (2, 1, 4, 4, 1)
    with pytest.raises(KernelError, match="cannot share a stage"):
        conv_weight_shape(["sobel_x", "roberts_x"], 3, KernelMode.SUM)
    with pytest.raises(KernelError, match="cannot share a stage"):
        conv_weight_shape(["[[1,2,3]]", "[[1,2]]"], 3, KernelMode.SUM)


def test_conv_weight_shape_refusals() -> None:
    with pytest.raises(KernelError, match="no kernel"):
        conv_weight_shape([], 3, KernelMode.SUM)
    with pytest.raises(ShapeError, match="in_channels"):
        conv_weight_shape(["sobel_x"], 0, KernelMode.SUM)
    with pytest.raises(ValueError):
        conv_weight_shape(["sobel_x"], 3, "bogus")  # type: ignore[arg-type]


def test_conv_weight_sum_gray_depthwise() -> None:
    torch = pytest.importorskip("torch")
    cw = conv_weight(["sobel_x", "sobel_y"], 3, KernelMode.SUM)
    assert cw.weight.shape == (2, 3, 3, 3) and cw.weight.dtype == torch.float32
    assert cw.groups == 1 and cw.bias is None and not cw.gray and cw.labels == ["sobel_x", "sobel_y"]
    for c in range(3):
        assert cw.weight[0, c].tolist() == EXPECTED["sobel_x"]
        assert cw.weight[1, c].tolist() == EXPECTED["sobel_y"]
    g = conv_weight(["sobel_x", "sobel_y"], 3, KernelMode.GRAY)
    assert g.weight.shape == (2, 1, 3, 3) and g.gray and g.groups == 1
    d = conv_weight(["sobel_x", "sobel_y"], 3, KernelMode.DEPTHWISE, dtype=torch.float64)
    assert d.weight.shape == (6, 1, 3, 3) and d.groups == 3 and d.weight.dtype == torch.float64
    assert d.labels == ["sobel_x[R]", "sobel_y[R]", "sobel_x[G]", "sobel_y[G]", "sobel_x[B]", "sobel_y[B]"]
    assert d.weight[3, 0].tolist() == EXPECTED["sobel_y"]
    assert conv_weight(["box"], 1, KernelMode.DEPTHWISE).labels == ["box"]
    four = conv_weight(["box"], 4, KernelMode.DEPTHWISE, channel_labels=["C", "M", "Y", "K"])
    assert four.labels == ["box[C]", "box[M]", "box[Y]", "box[K]"]
    assert conv_weight(["box"], 2, KernelMode.DEPTHWISE).labels == ["box[0]", "box[1]"]
    dup = conv_weight(["1 2 1", "1 2 1"], 1, KernelMode.SUM)
    assert dup.labels == ["inline1x3", "inline1x3#2"]


def test_depthwise_runs_each_channel_alone() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    cw = conv_weight(["sobel_x", "laplacian"], 3, KernelMode.DEPTHWISE)
    y = F.conv2d(x, cw.weight, groups=cw.groups)
    for c in range(3):
        for o, name in enumerate(["sobel_x", "laplacian"]):
            w = torch.tensor(EXPECTED[name], dtype=torch.float32)[None, None]
            torch.testing.assert_close(y[:, c * 2 + o], F.conv2d(x[:, c : c + 1], w)[:, 0])


def test_importing_kernels_loads_neither_torch_nor_numpy() -> None:
    code = (
        "import sys; import featcli.kernels as k; "
        "k.conv_weight_shape(['sobel_x', 'gaussian(size=7,sigma=1.5)', '1 0 -1'], 3, 'sum'); "
        "k.resolve('gabor:theta=30'); "
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
