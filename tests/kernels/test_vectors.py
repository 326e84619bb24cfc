"""1-D checkpoint tensors (PReLU slopes, ``prelu:w=FILE:KEY``): vector_length and load_vector, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from featcli.errors import WeightsError
from featcli.kernels import cache, load_vector, vector_length

torch = pytest.importorskip("torch")

SLOPES = torch.linspace(0.05, 0.5, 10)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


@pytest.fixture
def facenet(tmp_path: Path) -> Path:
    """A facenet-style checkpoint: conv, then PReLU slopes (10,), nested under ``state_dict``."""
    p = tmp_path / "pnet.pt"
    torch.save({"state_dict": {"conv1.weight": torch.randn(10, 3, 3, 3), "conv1.bias": torch.zeros(10),
                               "prelu1.weight": SLOPES, "conv2.weight": torch.randn(16, 10, 3, 3)}}, p)
    return p


def test_pt_slopes(facenet: Path) -> None:
    ref = f"{facenet}:prelu1.weight"
    assert vector_length(ref) == 10
    got = load_vector(ref)
    assert got.dtype == torch.float32 and got.shape == (10,)
    torch.testing.assert_close(got, SLOPES)
    assert vector_length(f"{facenet}:state_dict.prelu1.weight") == 10  # the wrapper may be typed
    assert vector_length(f"{facenet}:prelu*") == 10  # a glob matching one key


def test_safetensors_slopes(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    p = tmp_path / "pnet.safetensors"
    st.save_file({"prelu1.weight": SLOPES.to(torch.float16), "conv1.weight": torch.randn(10, 3, 3, 3)}, str(p))
    assert vector_length(f"{p}:prelu1.weight") == 10
    got = load_vector(f"{p}:prelu1.weight")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, SLOPES, atol=1e-3, rtol=1e-3)


def test_npy_slopes(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    p = tmp_path / "slopes.npy"
    np.save(p, np.full(3, 0.1))
    assert vector_length(str(p)) == 3
    assert load_vector(str(p)).dtype == torch.float32


def test_each_caller_gets_its_own_copy(facenet: Path) -> None:
    ref = f"{facenet}:prelu1.weight"
    load_vector(ref).zero_()
    torch.testing.assert_close(load_vector(ref), SLOPES)


def test_2d_tensor_refused_naming_ref_and_shape(facenet: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as exc:
        vector_length(f"{facenet}:conv1.weight")
    assert str(exc.value) == (f"{facenet}:conv1.weight: 4-D tensor [10, 3, 3, 3]; expected a 1-D tensor of "
                              "per-channel values (such as PReLU slopes)")
    p = tmp_path / "two.pt"
    torch.save({"prelu1.weight": torch.ones(10, 3)}, p)
    for call in (vector_length, load_vector):
        with pytest.raises(WeightsError, match=r"prelu1.weight: 2-D tensor \[10, 3\]; expected a 1-D tensor"):
            call(f"{p}:prelu1.weight")


@pytest.mark.parametrize(
    ("tensor", "msg"),
    [(torch.tensor(0.25), r"0-D tensor \[\]; expected a 1-D tensor"),
     (torch.ones(0), "empty tensor"),
     (torch.ones(4, dtype=torch.int64), "integer dtype int64"),
     (torch.tensor([0.1, float("nan")]), "NaN"),
     (torch.ones(4, dtype=torch.complex64), "complex")],
)
def test_bad_vectors_refused(tmp_path: Path, tensor: torch.Tensor, msg: str) -> None:
    p = tmp_path / "bad.pt"
    torch.save({"a": tensor}, p)
    with pytest.raises(WeightsError, match=msg):
        vector_length(f"{p}:a")


def test_key_needed_and_helped(facenet: Path) -> None:
    with pytest.raises(WeightsError, match=r"holds 4 tensors; pick one with FILE:KEY; 1-D tensors: conv1.bias \(10\), "
                                           r"prelu1.weight \(10\)"):
        vector_length(str(facenet))
    with pytest.raises(WeightsError, match=r"no tensor 'prelu2.weight' \(did you mean .*prelu1.weight"):
        vector_length(f"{facenet}:prelu2.weight")
    with pytest.raises(WeightsError, match="not found"):
        vector_length(f"{facenet.parent}/missing.pt:prelu1.weight")
    np = pytest.importorskip("numpy")
    npy = facenet.parent / "x.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(WeightsError, match="an .npy file holds one array; drop ':k'"):
        vector_length(f"{npy}:k")


def test_torchscript_needs_opt_in(tmp_path: Path) -> None:
    import warnings

    m = torch.nn.Sequential(torch.nn.PReLU(5))
    p = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(m).save(str(p))  # type: ignore[no-untyped-call]
    with pytest.raises(WeightsError, match="TorchScript archive, which is code"):
        vector_length(f"{p}:0.weight")
    assert vector_length(f"{p}:0.weight", allow_torchscript=True) == 5
