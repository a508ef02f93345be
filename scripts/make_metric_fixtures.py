"""Fixtures for the metrics: feature sets, and what scipy and numpy make of them.

Fréchet distance as pytorch-fid computes it (scipy.linalg.sqrtm of Σ₁Σ₂, real part), the square root of a symmetric
PSD matrix (scipy.linalg.sqrtm), and KID's unbiased polynomial-kernel MMD² over the whole sets (one subset), for:
  a, b: 300 and 250 vectors of dimension 24, different means and covariances (b correlated);
  c: 40 vectors of dimension 24 from the same law as a.

Regenerate:  python3 scripts/make_metric_fixtures.py   (pip install numpy scipy safetensors)
Writes Tests/DiffuseMetricsTests/Fixtures/metrics.safetensors (F64):
  a, b, c, sqrtm_cov_b, fid_ab, fid_ac, kid_ab, kid_ac
"""
import pathlib

import numpy as np
from safetensors.numpy import save_file
from scipy import linalg

root = pathlib.Path(__file__).resolve().parent.parent / "Tests/DiffuseMetricsTests/Fixtures"
root.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
d = 24
a = rng.normal(size=(300, d))
mix = rng.normal(size=(d, d)) * 0.3 + np.eye(d)
b = rng.normal(size=(250, d)) @ mix + 0.5
c = rng.normal(size=(40, d))
# Values that float32 holds exactly, so that both sides start from the same numbers.
a, b, c = (x.astype(np.float32).astype(np.float64) for x in (a, b, c))


def fid(x, y):  # pytorch-fid's calculate_frechet_distance
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def kid(x, y):  # unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, one subset of all vectors
    k = lambda p, q: (p @ q.T / p.shape[1] + 1) ** 3
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


tensors = {"a": a, "b": b, "c": c, "sqrtm_cov_b": linalg.sqrtm(np.cov(b, rowvar=False)).real,
           "fid_ab": np.array([fid(a, b)]), "fid_ac": np.array([fid(a, c)]),
           "kid_ab": np.array([kid(a[:250], b)]), "kid_ac": np.array([kid(a[:40], c)])}
save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(root / "metrics.safetensors"))
print({k: float(v[0]) for k, v in tensors.items() if v.size == 1})
