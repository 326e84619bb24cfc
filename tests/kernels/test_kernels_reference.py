"""Kernels run through ``F.conv2d`` against OpenCV and SciPy on a photo-like RGB image, to 1e-5.

Every comparison uses the *valid* region (no padding on the torch side), so border handling does not
matter; OpenCV and SciPy anchor a kernel at ``(kh // 2, kw // 2)``, which fixes the crop.
"""

from __future__ import annotations

from typing import Any

import pytest

from featcli.enums import KernelMode
from featcli.kernels import conv_weight, library, resolve

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
F = torch.nn.functional
ATOL = 1e-5


def photo_like(h: int = 48, w: int = 64, seed: int = 7) -> Any:
    """Deterministic (H, W, 3) float64 image in [0, 1]: smooth gradients, shapes, texture and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([x / w, y / h, 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0)], axis=-1)
    disc = (x - 0.6 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.2 * h) ** 2
    img[disc] = (0.9, 0.2, 0.1)
    img[int(0.6 * h) : int(0.9 * h), int(0.1 * w) : int(0.4 * w)] = (0.1, 0.3, 0.95)
    img += rng.normal(0.0, 0.03, img.shape)
    return np.clip(img, 0.0, 1.0)


IMG = photo_like()


def _torch_depthwise(ref: str) -> tuple[Any, tuple[int, int]]:
    """(H', W', 3) valid-region response of each channel, and the kernel size."""
    cw = conv_weight([ref], 3, KernelMode.DEPTHWISE)
    x = torch.from_numpy(IMG.transpose(2, 0, 1)[None].astype(np.float32))
    y = F.conv2d(x, cw.weight, groups=cw.groups)[0].numpy().transpose(1, 2, 0).astype(np.float64)
    return y, tuple(cw.weight.shape[-2:])  # type: ignore[return-value]


def _crop(full: Any, ksize: tuple[int, int]) -> Any:
    kh, kw = ksize
    ay, ax = kh // 2, kw // 2
    return full[ay : ay + IMG.shape[0] - kh + 1, ax : ax + IMG.shape[1] - kw + 1]


FAMILY_REFS = ["gaussian:size=7,sigma=1.5", "box:size=4", "log:sigma=1.4", "dog:sigma1=1,sigma2=2",
               "gabor:theta=30,sigma=2,lambda=6,psi=40", "sobel:angle=45", "kirsch:angle=135",
               "sharpen:norm=1", "[[1,2],[3,4],[5,6]]"]
ALL_REFS = sorted(library()) + FAMILY_REFS


@pytest.mark.parametrize("ref", ALL_REFS)
def test_matches_cv2_filter2d(ref: str) -> None:
    cv2 = pytest.importorskip("cv2")
    ours, ksize = _torch_depthwise(ref)
    k = np.array(resolve(ref).weights, dtype=np.float64)
    theirs = cv2.filter2D(IMG, cv2.CV_64F, k, borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(ours, _crop(theirs, ksize), rtol=0, atol=ATOL)


@pytest.mark.parametrize("ref", ALL_REFS)
def test_matches_scipy_correlate(ref: str) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    ours, ksize = _torch_depthwise(ref)
    k = np.array(resolve(ref).weights, dtype=np.float64)
    theirs = np.stack([ndi.correlate(IMG[..., c], k, mode="constant") for c in range(3)], axis=-1)
    np.testing.assert_allclose(ours, _crop(theirs, ksize), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("ref", "call"),
    [
        ("sobel_x", lambda cv2, im: cv2.Sobel(im, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)),
        ("sobel_y", lambda cv2, im: cv2.Sobel(im, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)),
        ("scharr_x", lambda cv2, im: cv2.Scharr(im, cv2.CV_64F, 1, 0, borderType=cv2.BORDER_CONSTANT)),
        ("scharr_y", lambda cv2, im: cv2.Scharr(im, cv2.CV_64F, 0, 1, borderType=cv2.BORDER_CONSTANT)),
        ("laplacian", lambda cv2, im: cv2.Laplacian(im, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_CONSTANT)),
        ("box", lambda cv2, im: cv2.blur(im, (3, 3), borderType=cv2.BORDER_CONSTANT)),
        ("gaussian3", lambda cv2, im: cv2.GaussianBlur(im, (3, 3), 0, borderType=cv2.BORDER_CONSTANT)),
        ("gaussian5", lambda cv2, im: cv2.GaussianBlur(im, (5, 5), 0, borderType=cv2.BORDER_CONSTANT)),
        ("gaussian:size=7,sigma=1.5",
         lambda cv2, im: cv2.GaussianBlur(im, (7, 7), 1.5, borderType=cv2.BORDER_CONSTANT)),
    ],
)
def test_matches_opencv_named_filters(ref: str, call: Any) -> None:
    cv2 = pytest.importorskip("cv2")
    ours, ksize = _torch_depthwise(ref)
    np.testing.assert_allclose(ours, _crop(call(cv2, IMG), ksize), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("ref", "call"),
    [
        ("sobel_x", lambda ndi, im: ndi.sobel(im, axis=1, mode="constant")),
        ("sobel_y", lambda ndi, im: ndi.sobel(im, axis=0, mode="constant")),
        ("prewitt_x", lambda ndi, im: ndi.prewitt(im, axis=1, mode="constant")),
        ("prewitt_y", lambda ndi, im: ndi.prewitt(im, axis=0, mode="constant")),
        ("laplacian", lambda ndi, im: ndi.laplace(im, mode="constant")),
        ("box", lambda ndi, im: ndi.uniform_filter(im, size=3, mode="constant")),
    ],
)
def test_matches_scipy_named_filters(ref: str, call: Any) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    ours, ksize = _torch_depthwise(ref)
    theirs = np.stack([call(ndi, IMG[..., c]) for c in range(3)], axis=-1)
    np.testing.assert_allclose(ours, _crop(theirs, ksize), rtol=0, atol=ATOL)


def test_family_weights_equal_opencv_generators() -> None:
    cv2 = pytest.importorskip("cv2")
    g = cv2.getGaussianKernel(7, 1.5, ktype=cv2.CV_64F)
    np.testing.assert_allclose(np.array(resolve("gaussian:size=7,sigma=1.5").weights), g @ g.T, atol=1e-15)
    g5 = cv2.getGaussianKernel(5, 0, ktype=cv2.CV_64F)  # OpenCV's fixed 5-tap table: the binomial
    np.testing.assert_allclose(np.array(resolve("gaussian5").weights), g5 @ g5.T, atol=1e-15)
    for theta, psi, size in ((0, 0, 0), (45, 0, 0), (30, 40, 0), (120, 90, 11)):
        spec = f"gabor:theta={theta},sigma=2,lambda=6,gamma=0.5,psi={psi}" + (f",size={size}" if size else "")
        cvk = cv2.getGaborKernel((size, size), 2.0, np.radians(theta), 6.0, 0.5, np.radians(psi),
                                 ktype=cv2.CV_64F)
        np.testing.assert_allclose(np.array(resolve(spec).weights), cvk, atol=1e-12)


def test_tutorial_3x3x3x2_sobel_sum_mode() -> None:
    """The classic example: Conv2d(3, 2, 3) whose weight[o, c] is sobel_o on every input channel."""
    cv2 = pytest.importorskip("cv2")
    cw = conv_weight(["sobel_x", "sobel_y"], 3, KernelMode.SUM)
    assert cw.weight.shape == (2, 3, 3, 3) and cw.groups == 1
    conv = torch.nn.Conv2d(3, 2, kernel_size=3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(cw.weight)
        x = torch.from_numpy(IMG.transpose(2, 0, 1)[None].astype(np.float32))
        out = conv(x)[0].numpy().astype(np.float64)
    for o, (dx, dy) in enumerate(((1, 0), (0, 1))):
        per_channel = cv2.Sobel(IMG, cv2.CV_64F, dx, dy, ksize=3, borderType=cv2.BORDER_CONSTANT)
        np.testing.assert_allclose(out[o], _crop(per_channel.sum(axis=-1), (3, 3)), rtol=0, atol=ATOL)


def test_step_edge_orientation_as_documented() -> None:
    """docs/kernels.md: sobel_x on a dark-to-bright step from left to right (valid region)."""
    step = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]] * 5)[None, None]
    out = F.conv2d(step, conv_weight(["sobel_x"], 1, KernelMode.SUM).weight)
    assert out[0, 0].tolist() == [[0.0, 4.0, 4.0, 0.0]] * 3
    down = step.transpose(-1, -2)  # dark on top, bright below
    out_y = F.conv2d(down, conv_weight(["sobel_y"], 1, KernelMode.SUM).weight)
    assert out_y[0, 0].tolist() == [[0.0] * 3, [4.0] * 3, [4.0] * 3, [0.0] * 3]
    for ref in ("prewitt_x", "scharr_x", "kirsch_e", "sobel:angle=0"):
        assert F.conv2d(step, conv_weight([ref], 1, KernelMode.SUM).weight).max() > 0
        assert F.conv2d(step, conv_weight([ref], 1, KernelMode.SUM).weight).min() == 0
    assert F.conv2d(step, conv_weight(["kirsch_w"], 1, KernelMode.SUM).weight).max() <= 0


def test_step_edge_sample() -> None:
    """samples/step_edge.png (dark left half, bright right half): sobel_x +4 on the edge, sobel_y 0."""
    from PIL import Image

    from featcli.resources import sample_path

    with Image.open(sample_path("step_edge")) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    x = torch.from_numpy(a)[None, None]
    out = F.conv2d(x, conv_weight(["sobel_x", "sobel_y"], 1, KernelMode.SUM).weight)[0]
    edge_cols = sorted({int(c) for c in torch.nonzero(out[0])[:, 1]})
    assert edge_cols == [30, 31]  # the two valid windows that straddle the step between columns 31 and 32
    assert torch.all(out[0][:, edge_cols] == 4.0) and torch.all(out[1] == 0)
