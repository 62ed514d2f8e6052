"""ZCA whitening on real Fashion-MNIST: kornia maths, exact round trip, compact inverse bound."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from habacli.errors import ConfigError
from habacli.transforms.zca import DEFAULT_TOLERANCE, ZCA, CompactZCA


def _fashion_images(root: Path, n: int) -> torch.Tensor:
    with gzip.open(root / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(16 + n * 784), np.uint8, offset=16)  # only the first n images
    return torch.from_numpy(raw.reshape(n, 1, 28, 28).copy())


@pytest.fixture(scope="module")
def images(fashion_mnist_dir: Path) -> torch.Tensor:
    return _fashion_images(fashion_mnist_dir, 3000)


@pytest.fixture(scope="module")
def zca(images: torch.Tensor) -> ZCA:
    return ZCA.fit(images)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Multi-threaded LAPACK crawls on a busy 2-core machine; these small problems need one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fit_matches_kornia_maths(images: torch.Tensor, zca: ZCA) -> None:
    x = images.reshape(len(images), -1).double().numpy() / 255.0
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / (len(x) - 1)
    u, s, _ = (t.numpy() for t in torch.linalg.svd(torch.from_numpy(cov)))  # kornia: SVD of the covariance
    t = u @ np.diag(1 / np.sqrt(s + 0.1)) @ u.T
    np.testing.assert_allclose(zca.mean.numpy(), mu, atol=1e-12)
    np.testing.assert_allclose(zca.eigenvalues.numpy(), np.clip(s, 0, None), atol=1e-9)
    xs = images[:50].float() / 255
    expected = (xs.reshape(50, -1).double().numpy() - mu) @ t
    np.testing.assert_allclose(zca.apply(xs).reshape(50, -1).double().numpy(), expected, atol=2e-4)
    assert zca.shape == (1, 28, 28) and zca.eps == 0.1


def test_whitened_covariance_is_regularised_identity(images: torch.Tensor, zca: ZCA) -> None:
    w = zca.apply(images.double() / 255).reshape(len(images), -1)
    cov = torch.cov(w.T)
    s = zca.eigenvalues
    expected = zca.eigenvectors @ torch.diag(s / (s + zca.eps)) @ zca.eigenvectors.T
    torch.testing.assert_close(cov, expected, atol=1e-8, rtol=0)
    assert w.mean(0).abs().max() < 1e-7


def test_apply_invert_round_trip_and_uint8_input(images: torch.Tensor, zca: ZCA) -> None:
    xs = images[:100].float() / 255
    w = zca.apply(images[:100])  # uint8 is read as /255
    assert w.shape == xs.shape and w.dtype == torch.float32
    torch.testing.assert_close(zca.apply(xs), w)
    assert (zca.invert(w) - xs).abs().max() < 1e-5
    with pytest.raises(ConfigError):
        zca.apply(torch.zeros(2, 3, 28, 28))


def test_tensor_round_trip_is_exact(zca: ZCA) -> None:
    back = ZCA.from_tensors(zca.to_tensors())
    assert torch.equal(back.eigenvectors, zca.eigenvectors) and back.eps == zca.eps and back.shape == zca.shape
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(back.apply(x), zca.apply(x))


def _tail_error(zca: ZCA, w: torch.Tensor, k: int) -> float:
    xz = w.reshape(len(w), -1).double()
    u = zca.eigenvectors.float().double()
    root = (zca.eigenvalues.float().double() + zca.eps).sqrt()
    q = xz @ u[:, k:]
    c = float((q * q * root[k:]).sum() / (q * q).sum())
    return float(((q * (root[k:] - c)) @ u[:, k:].T).abs().max())


def test_compact_inverse_meets_its_bound_with_the_smallest_rank(images: torch.Tensor, zca: ZCA) -> None:
    torch.manual_seed(0)
    w = zca.apply(images[-200:].float() / 255)
    w = w + 0.3 * torch.randn_like(w)  # distilled images drift off the data manifold
    cz = zca.compact(w)
    assert isinstance(cz, CompactZCA)
    assert 0 < cz.rank < zca.dim
    assert cz.error_bound <= DEFAULT_TOLERANCE == cz.tolerance
    actual = (cz.invert(w.double()) - zca.invert(w.double())).abs().max().item()
    assert actual == pytest.approx(cz.error_bound, abs=1e-9)
    assert _tail_error(zca, w, cz.rank - 1) > DEFAULT_TOLERANCE  # one fewer eigenpair is not enough
    # float32 decoding (what the codec does) stays within the bound plus float32 round-off
    assert (cz.invert(w) - zca.invert(w.double()).float()).abs().max() < DEFAULT_TOLERANCE + 1e-5
    # a looser tolerance keeps fewer eigenpairs; the stored form round-trips
    loose = zca.compact(w, tol=4 / 255)
    assert loose.rank < cz.rank and loose.error_bound <= 4 / 255
    back = CompactZCA.from_parts(cz.to_tensors(), cz.to_metadata(), cz.shape)
    assert torch.equal(back.invert(w), cz.invert(w))
    assert cz.to_metadata()["rank"] == cz.rank and cz.to_tensors()["basis"].dtype == torch.float32


def test_compact_pixel_scale_tightens_the_rank(images: torch.Tensor, zca: ZCA) -> None:
    w = zca.apply(images[:100].float() / 255)
    assert zca.compact(w, pixel_scale=4.0).rank > zca.compact(w).rank


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        ZCA.fit(torch.rand(1, 4))
    with pytest.raises(ConfigError):
        ZCA.fit(torch.rand(5, 4), eps=0.0)
    z = ZCA.fit(torch.rand(20, 4))
    with pytest.raises(ConfigError):
        z.compact(torch.rand(3, 4), tol=0)
