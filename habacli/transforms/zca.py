"""ZCA whitening as in MTT/HaBa (kornia ``ZCAWhitening``, eps 0.1), and its compact inverse.

Fit on the train split in pixel space [0, 1], flattened to ``D = C*H*W`` (baselines.md section 3):

    mu = mean(X);  Sigma = (X - mu)^T (X - mu) / (N - 1);  Sigma = U diag(S) U^T
    T     = U diag(1 / sqrt(S + eps)) U^T      x_z = (x - mu) T
    T_inv = U diag(sqrt(S + eps)) U^T          x   = x_z T_inv + mu

The covariance and the eigendecomposition run in float64. An artifact does not need the full
``D x D`` matrix to undo the whitening: :meth:`ZCA.compact` keeps the top ``k`` eigenpairs and one
scale ``c`` for the orthogonal complement,

    x = mu + x_z U_k diag(sqrt(S_k + eps)) U_k^T + c (x_z - x_z U_k U_k^T),

with the smallest ``k`` (found by bisection) whose maximum pixel error on the artifact's own images,
measured against the full inverse, stays below a tolerance (default 0.5/255).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from habacli.errors import ConfigError

#: kornia / MTT default regularisation.
DEFAULT_EPS = 0.1
#: Default pixel-space tolerance of a compact inverse: half a grey level.
DEFAULT_TOLERANCE = 0.5 / 255
_CHUNK = 4096
_ONE_THREAD_EIGH_MAX = 1024


def _flatten(x: Tensor, dim: int | None = None) -> Tensor:
    if x.dim() < 2:
        raise ConfigError(f"ZCA expects a batch [N, D] or [N, C, H, W], got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    if dim is not None and flat.shape[1] != dim:
        raise ConfigError(f"ZCA was fitted on {dim} values per image, got {flat.shape[1]}")
    return flat


def _eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``; small CPU problems run on one thread, where multi-threaded LAPACK can be
    40x slower on a busy machine (measured: 784x784 float64, 0.4 s on 1 thread vs 17 s on 2 threads)."""
    if cov.device.type != "cpu" or cov.shape[0] > _ONE_THREAD_EIGH_MAX:
        return torch.linalg.eigh(cov)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(cov)
    finally:
        torch.set_num_threads(threads)


def _as_float(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


@dataclass
class ZCA:
    """A fitted ZCA whitening: ``mean [D]``, ``eigenvectors U [D, D]`` (columns, eigenvalues
    descending), ``eigenvalues S [D]`` (float64) and ``eps``. ``shape`` is ``(C, H, W)`` if known."""

    mean: Tensor
    eigenvectors: Tensor
    eigenvalues: Tensor
    eps: float = DEFAULT_EPS
    shape: tuple[int, ...] | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def dim(self) -> int:
        """``D``, the number of values per image."""
        return int(self.mean.numel())

    @classmethod
    def fit(cls, x: Tensor, eps: float = DEFAULT_EPS) -> ZCA:
        """Fit on ``x`` (``[N, D]`` or ``[N, C, H, W]``; floats in [0, 1] or uint8, divided by 255)."""
        if eps <= 0:
            raise ConfigError(f"ZCA eps must be > 0, got {eps}")
        shape = tuple(x.shape[1:]) if x.dim() > 2 else None
        flat = _flatten(x)
        n, d = flat.shape
        if n < 2:
            raise ConfigError("ZCA needs at least 2 images to fit")
        total = torch.zeros(d, dtype=torch.float64, device=flat.device)
        for i in range(0, n, _CHUNK):  # chunks bound the float64 copy's memory
            total += _as_float(flat[i : i + _CHUNK]).double().sum(0)
        mean = total / n
        cov = torch.zeros(d, d, dtype=torch.float64, device=flat.device)
        for i in range(0, n, _CHUNK):
            c = _as_float(flat[i : i + _CHUNK]).double() - mean
            cov.addmm_(c.T, c)
        cov /= n - 1
        evals, evecs = _eigh(cov)  # ascending
        evals = evals.flip(0).clamp_min(0.0)
        evecs = evecs.flip(1)
        return cls(mean.cpu(), evecs.cpu(), evals.cpu(), float(eps), shape)

    def _matrices(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        key = (str(device), dtype)
        if key not in self._cache:
            u = self.eigenvectors.double()
            root = (self.eigenvalues.double() + self.eps).sqrt()
            t = (u / root) @ u.T
            t_inv = (u * root) @ u.T
            self._cache[key] = tuple(m.to(device=device, dtype=dtype) for m in (self.mean.double(), t, t_inv))
        return self._cache[key]

    def apply(self, x: Tensor) -> Tensor:
        """Whiten ``x`` (pixel space [0, 1], or uint8) -> same shape, float."""
        x = _as_float(x)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mean, t, _ = self._matrices(x.device, dtype)
        return ((_flatten(x, self.dim).to(dtype) - mean) @ t).reshape(x.shape)

    def invert(self, x: Tensor) -> Tensor:
        """Undo :meth:`apply` exactly (full inverse) -> same shape."""
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mean, _, t_inv = self._matrices(x.device, dtype)
        return (_flatten(x, self.dim).to(dtype) @ t_inv + mean).reshape(x.shape)

    def to_tensors(self) -> dict[str, Tensor]:
        """Exact tensor form for caching (``ZCA.from_tensors`` inverts it)."""
        out = {
            "mean": self.mean.double().contiguous(),
            "eigenvectors": self.eigenvectors.double().contiguous(),
            "eigenvalues": self.eigenvalues.double().contiguous(),
            "eps": torch.tensor([self.eps], dtype=torch.float64),
        }
        if self.shape is not None:
            out["shape"] = torch.tensor(self.shape, dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> ZCA:
        """Rebuild from :meth:`to_tensors`."""
        shape = tuple(int(v) for v in tensors["shape"].tolist()) if "shape" in tensors else None
        return cls(
            tensors["mean"].double(),
            tensors["eigenvectors"].double(),
            tensors["eigenvalues"].double(),
            float(tensors["eps"].reshape(-1)[0]),
            shape,
        )

    def compact(
        self, images: Tensor, tol: float = DEFAULT_TOLERANCE, *, pixel_scale: Tensor | float = 1.0
    ) -> CompactZCA:
        """A truncated inverse that decodes ``images`` (whitened, ``[M, ...]``) within ``tol`` in pixel
        space of the full inverse. ``pixel_scale`` multiplies the error per value (e.g. the
        de-normalisation std broadcast to ``[D]``); stored tensors are float32 and the error is measured
        with exactly those rounded tensors."""
        if tol <= 0:
            raise ConfigError(f"the ZCA tolerance must be > 0, got {tol}")
        d = self.dim
        xz = _flatten(images.detach(), d).double().cpu()
        scale = torch.as_tensor(pixel_scale, dtype=torch.float64).reshape(-1)
        scale = scale.expand(d) if scale.numel() == 1 else scale
        mean32, u32, s32 = self.mean.float(), self.eigenvectors.float(), self.eigenvalues.float()
        u, root = u32.double(), (s32.double() + self.eps).sqrt()
        root_full = (self.eigenvalues.double() + self.eps).sqrt()
        full = (xz @ self.eigenvectors.double()) * root_full @ self.eigenvectors.double().T + self.mean.double()
        q = xz @ u  # the images' coordinates on the stored eigenvectors
        resid = (q * root) @ u.T + mean32.double() - full  # float32 rounding of the stored parts

        def tail_scale(k: int) -> float:
            qt = q[:, k:]
            den = (qt * qt).sum()
            if k == d:
                return 0.0
            return float((qt * qt * root[k:]).sum() / den) if den > 0 else float(root[k:].mean())

        def approx_error(k: int) -> float:  # rank-k inverse = full + resid + tail term (U orthonormal)
            if xz.shape[0] == 0:
                return 0.0
            err = resid + (q[:, k:] * (tail_scale(k) - root[k:])) @ u[:, k:].T
            return float((err.abs() * scale).max())

        lo, hi = 0, d
        while lo < hi:  # bisection: the error is non-increasing in k in practice
            mid = (lo + hi) // 2
            if approx_error(mid) <= tol:
                hi = mid
            else:
                lo = mid + 1
        while True:  # the recorded bound is measured with the real compact inverse
            best = CompactZCA(
                mean32.clone(),
                u32[:, :hi].clone(),
                s32[:hi].clone(),
                self.eps,
                tail_scale(hi),
                self.shape,
                tolerance=tol,
            )
            best.error_bound = float(((best.invert(xz) - full).abs() * scale).max()) if xz.shape[0] else 0.0
            if best.error_bound <= tol or hi == d:
                return best
            hi += 1


@dataclass
class CompactZCA:
    """The inverse ZCA an artifact stores: ``mean [D]``, ``basis U_k [D, k]``, ``eigenvalues S_k [k]``
    (float32), ``eps``, ``tail_scale c``; ``error_bound`` is the measured max pixel error on the
    artifact's images against the full inverse and ``tolerance`` the target it was chosen for."""

    mean: Tensor
    basis: Tensor
    eigenvalues: Tensor
    eps: float
    tail_scale: float
    shape: tuple[int, ...] | None = None
    tolerance: float = DEFAULT_TOLERANCE
    error_bound: float = 0.0

    def __post_init__(self) -> None:
        # contiguous, as a loaded artifact holds them: the fit leaves ``basis`` a transposed view, and a matmul
        # over other strides takes another BLAS path, so a decode before saving differed in the last bit
        # from the same decode after loading (4.8e-7 at one thread; tests/test_artifact.py::test_round_trip)
        self.mean, self.basis, self.eigenvalues = (t.contiguous() for t in (self.mean, self.basis, self.eigenvalues))

    @property
    def rank(self) -> int:
        """``k``, the number of kept eigenpairs."""
        return int(self.basis.shape[1])

    @property
    def dim(self) -> int:
        """``D``."""
        return int(self.mean.numel())

    def invert(self, x: Tensor) -> Tensor:
        """``x_z -> mu + x_z U_k diag(sqrt(S_k+eps)) U_k^T + c (x_z - x_z U_k U_k^T)``, shape kept."""
        flat = _flatten(x, self.dim)
        dtype = flat.dtype if flat.is_floating_point() else torch.float32
        flat = flat.to(dtype)
        u = self.basis.to(device=flat.device, dtype=dtype)
        root = (self.eigenvalues.double() + self.eps).sqrt().to(device=flat.device, dtype=dtype)  # float64 on CPU
        coef = flat @ u
        out = (coef * (root - self.tail_scale)) @ u.T + self.tail_scale * flat
        return (out + self.mean.to(device=flat.device, dtype=dtype)).reshape(x.shape)

    def to_tensors(self) -> dict[str, Tensor]:
        """The artifact's ``zca.*`` tensors (float32)."""
        return {
            "mean": self.mean.float().contiguous(),
            "basis": self.basis.float().contiguous(),
            "eigenvalues": self.eigenvalues.float().contiguous(),
        }

    def to_metadata(self) -> dict:
        """The artifact's ``zca`` metadata object (formats/haba-artifact-v1.md)."""
        return {
            "eps": self.eps,
            "rank": self.rank,
            "dim": self.dim,
            "tail_scale": self.tail_scale,
            "tolerance": self.tolerance,
            "error_bound": self.error_bound,
        }

    @classmethod
    def from_parts(cls, tensors: dict[str, Tensor], meta: dict, shape: tuple[int, ...] | None = None) -> CompactZCA:
        """Rebuild from the artifact's ``zca.*`` tensors and ``zca`` metadata."""
        return cls(
            tensors["mean"],
            tensors["basis"],
            tensors["eigenvalues"],
            float(meta["eps"]),
            float(meta["tail_scale"]),
            shape,
            float(meta.get("tolerance", DEFAULT_TOLERANCE)),
            float(meta.get("error_bound", 0.0)),
        )
