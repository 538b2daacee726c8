"""KID: torch-fidelity's estimator on the subsets it draws, computed with fewer multiply-adds."""
from __future__ import annotations

import numpy as np
import torch

KID_SUBSETS = 100


def kid_subset_indices(n_fake: int, n_real: int, subset_size: int, subsets: int = KID_SUBSETS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The subsets torch-fidelity's KID draws: (fake, real) index arrays [subsets, subset_size].

    One ``RandomState(seed)``, for each subset a fake then a real ``choice(n, subset_size, replace=False)``:
    the same calls in the same order as ``torch_fidelity.metric_kid.kid_features_to_metric``.
    """
    if not 1 < subset_size <= min(n_fake, n_real):
        raise ValueError(f"KID subset size {subset_size} must be in 2..{min(n_fake, n_real)} "
                         f"({n_fake} generated and {n_real} real samples)")
    rng = np.random.RandomState(seed)
    fake = np.empty((subsets, subset_size), np.int64)
    real = np.empty((subsets, subset_size), np.int64)
    for i in range(subsets):
        fake[i] = rng.choice(n_fake, subset_size, replace=False)
        real[i] = rng.choice(n_real, subset_size, replace=False)
    return fake, real


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch-fidelity's KID kernel, (x . y / d + 1) ** 3, in float32 as it computes it (in place after the matmul)."""
    k = np.matmul(x, np.swapaxes(y, -1, -2))
    k *= np.float32(1.0 / x.shape[-1])
    k += np.float32(1.0)
    return np.power(k, 3, out=k)


def _kernel_sums(x: np.ndarray, y: np.ndarray, ix: np.ndarray, iy: np.ndarray, same: bool,
                 budget: int = 1 << 23) -> np.ndarray:
    """float64 [subsets]: for each subset b, the sum of k(x[ix[b, i]], y[iy[b, j]]) over i, j (i != j when same).

    Two ways to the same sums, whichever needs fewer multiply-adds: the subsets' own kernel matrices
    (subsets x size^2 x d, as torch-fidelity does), or each pair of samples once (n_x x n_y x d) and the
    subsets' sums from it through 0/1 membership matrices (n_x x n_y x subsets more). With 10k samples and
    subsets of 1000 the first is cheaper; with 2k the second needs ~18x fewer. numpy, not torch, does the
    products: like torch-fidelity, and on the AMD EPYC here its OpenBLAS sgemm ran 2.5x faster than torch's MKL.
    budget: kernel entries held at a time (float32; 2^23 = 32 MiB).
    """
    subsets, size = ix.shape
    nx, ny, d = x.shape[0], y.shape[0], x.shape[1]
    if nx * ny * (d + subsets) < subsets * size * size * d:
        member_x = np.zeros((nx, subsets), np.float32)
        member_x[ix, np.arange(subsets)[:, None]] = 1.0
        member_y = member_x
        if not same:
            member_y = np.zeros((ny, subsets), np.float32)
            member_y[iy, np.arange(subsets)[:, None]] = 1.0
        sums = np.zeros(subsets)
        rows = max(1, budget // ny)
        for r in range(0, nx, rows):
            k = _poly_kernel(x[r:r + rows], y)
            if same:
                np.einsum("ii->i", k[:, r:r + rows])[:] = 0.0  # drop k(x_i, x_i): row r + i against column r + i
            # per row and subset: the row's sum over the subset's columns (<= size terms, float32), then float64
            sums += ((k @ member_y).astype(np.float64) * member_x[r:r + rows]).sum(0)
        return sums
    sums = np.empty(subsets)
    chunk = max(1, budget // (size * size))
    for b in range(0, subsets, chunk):
        xs = x[ix[b:b + chunk]]  # [c, size, d]
        k = _poly_kernel(xs, xs if same else y[iy[b:b + chunk]])  # [c, size, size]
        if same:
            np.einsum("bii->bi", k)[:] = 0.0
        sums[b:b + chunk] = k.sum(2).sum(1, dtype=np.float64)  # rows of size terms in float32, then float64
    return sums


def kid(fake: torch.Tensor, real: torch.Tensor, subset_size: int, seed: int = 0, subsets: int = KID_SUBSETS,
        memo: dict | None = None) -> tuple[float, float]:
    """(mean, std) of KID over subsets: torch-fidelity's value (polynomial kernel of degree 3, gamma 1/d,
    coef 1; unbiased MMD^2 per subset; population std) on the subsets it draws (`kid_subset_indices`).

    It agrees with ``torch_fidelity.kid`` to float32 rounding (the tests compare them) and takes less time:
    the sums are accumulated in float64, and ``memo`` (a dict kept with one set of real features) keeps the
    real-real sums, which are the same for every generator evaluated against those features.
    """
    fake, real = fake.detach().float().cpu().numpy(), real.detach().float().cpu().numpy()
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(f"KID needs features [N, d] of one width, got {list(fake.shape)} and {list(real.shape)}")
    ix, iy = kid_subset_indices(fake.shape[0], real.shape[0], subset_size, subsets, seed)
    key = (fake.shape[0], subset_size, subsets, seed)
    yy = memo.get(key) if memo is not None else None
    if yy is None:
        yy = _kernel_sums(real, real, iy, iy, True)
        if memo is not None:
            memo[key] = yy
    xx = _kernel_sums(fake, fake, ix, ix, True)
    xy = _kernel_sums(fake, real, ix, iy, False)
    m = subset_size
    mmd2 = (xx + yy) / (m * (m - 1)) - 2.0 * xy / (m * m)
    return float(mmd2.mean()), float(mmd2.std())


