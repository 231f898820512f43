"""Closed forms of the theorems (docs/theory.md §4), in ufm's normalisation: minima and Gram matrices.

All losses use ufm's normalisation (mean over anchor slots for SC; mean over samples plus regularisers for CE).
A sphere or ball of radius ``rho`` enters SC only through ``tau / rho^2``. ``ufm.theory`` re-exports these and
adds what theory predicts for a whole problem.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["sc_etf_loss", "sc_of_loss", "sc_of_loss_subsets", "ce_classifier_radius", "ce_etf_loss", "etf_gram",
           "of_gram", "etf_delta_gm"]


def sc_etf_loss(n: int, K: int, tau: float, radius: float = 1.0) -> float:
    """SC minimum for ``K`` balanced classes of ``n >= 2`` samples on the sphere (Graf et al. 2021):
    ``log(n - 1 + (N - n) exp(-K rho^2 / ((K-1) tau)))``, ``N = nK``, attained at a simplex ETF."""
    if n < 2 or K < 2:
        raise ValueError("the ETF closed form needs K >= 2 classes of n >= 2 samples")
    t = tau / radius**2
    return float(math.log(n - 1 + (n * K - n) * math.exp(-K / ((K - 1) * t))))


def _of_terms(class_counts, size, t):
    """Sum over classes with >= 2 members of ``n_c log(n_c - 1 + (size - n_c) e^{-1/t})`` (one batch)."""
    n = np.asarray(class_counts, dtype=np.float64)
    n = n[n >= 2]
    return float(np.sum(n * np.log(n - 1 + (size - n) * math.exp(-1.0 / t))))


def sc_of_loss(counts, tau: float, radius: float = 1.0, batches=None, labels=None) -> float:
    """SC minimum under non-negativity (UFM+), attained at an orthogonal frame (Kini et al. 2024).

    Full batch (``batches=None``): ``(1/N) sum_{c: n_c >= 2} n_c log(n_c - 1 + (N - n_c) exp(-rho^2/tau))``.
    Mini-batches (docs/theory.md §4): the same bound batch by batch, divided by ``T = sum_B |B|``; then ``labels``
    ``(N,)`` is needed (defaults to ``counts`` in class order).
    """
    t = tau / radius**2
    counts = np.asarray(counts)
    if batches is None:
        N = float(counts.sum())  # real class sizes allowed (the class-level problem)
        return _of_terms(counts, N, t) / N
    labels = np.repeat(np.arange(len(counts)), counts) if labels is None else np.asarray(labels)
    total, T = 0.0, 0
    for B in batches:
        B = np.asarray([i for i in B if i >= 0], dtype=np.int64)
        total += _of_terms(np.bincount(labels[B], minlength=len(counts)), len(B), t)
        T += len(B)
    return total / T


def sc_of_loss_subsets(counts, b: int, tau: float, radius: float = 1.0) -> float:
    """UFM+ minimum of the ``subsets:b`` objective over *all* ``C(N, b)`` subsets, exactly, whatever ``N``.

    Every subset has ``b`` slots, so the objective is the expectation over a uniform random subset ``B`` of
    ``(1/b) sum_c n_{B,c} log(n_{B,c} - 1 + (b - n_{B,c}) e^{-rho^2/tau})`` (over classes with
    ``n_{B,c} >= 2``), and ``n_{B,c}`` is hypergeometric: ``P(k) = C(n_c, k) C(N - n_c, b - k) / C(N, b)``.
    """
    t = tau / radius**2
    N = int(sum(counts))
    if not 1 <= b <= N:
        raise ValueError(f"batch size b must lie in 1..N={N}, got {b}")
    total, e = 0.0, math.exp(-1.0 / t)
    for n in counts:
        for k in range(max(2, b - (N - n)), min(n, b) + 1):
            p = math.comb(n, k) * math.comb(N - n, b - k) / math.comb(N, b)
            total += p * k * math.log(k - 1 + (b - k) * e)
    return total / b


def _bisect(f, lo, hi, iters=200):
    """Root of an increasing ``f`` on ``[lo, hi]`` (``f(lo) < 0 < f(hi)``), to float64 precision."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def ce_classifier_radius(K: int, weight_decay: float, radius: float = 1.0) -> float:
    """``r_W`` of L2-regularised CE (Graf et al. 2021): the root of
    ``2 lambda r (exp(K rho r / (K-1)) + K - 1) - rho = 0``."""
    lam, rho = weight_decay, radius
    f = lambda r: 2 * lam * r * (math.exp(min(K * rho * r / (K - 1), 700.0)) + K - 1) - rho  # noqa: E731
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return _bisect(f, 0.0, hi)


def _ce_margin_loss(K, p):
    """CE of a simplex ETF whose features and classifier rows have product of norms ``p``."""
    return math.log1p((K - 1) * math.exp(-K * p / (K - 1)))


def ce_etf_loss(K: int, weight_decay: float, radius: float = 1.0, feature_decay: float = 0.0,
                constraint: str = "ball") -> tuple[float, float, float]:
    """Minimum of balanced L2-regularised CE at the simplex ETF: ``(loss, r_W, feature norm)``.

    * ``ball``/``sphere``, no feature decay (Graf et al.): ``log(1 + (K-1) e^{-K rho r_W/(K-1)}) + lambda K r_W^2``.
    * ``sphere`` with feature decay: the same plus the constant ``lambda_Z rho^2``.
    * ``ball`` with feature decay: the feature norm ``rho' in [0, rho]`` is optimised too (golden section).
    * ``none`` (Zhu et al.): by AM-GM the regularisers cost ``2 sqrt(K lambda_W lambda_Z) p`` for ``p = rho r``,
      so ``p`` solves ``K e / (1 + (K-1) e) = c``, ``e = exp(-K p/(K-1))``, ``c = 2 sqrt(K lambda_W lambda_Z)``
      (``p = 0``, the zero solution, when ``c >= 1``).
    """
    lam, lz = weight_decay, feature_decay
    if constraint == "none":
        c = 2 * math.sqrt(K * lam * lz)
        if c >= 1:
            return math.log(K), 0.0, 0.0
        e = c / (K - (K - 1) * c)
        p = -(K - 1) / K * math.log(e)
        r = math.sqrt(p * math.sqrt(lz / (K * lam)))
        return _ce_margin_loss(K, p) + c * p, r, p / r

    def at_norm(rho):
        r = ce_classifier_radius(K, lam, rho) if rho > 0 else 0.0
        return _ce_margin_loss(K, rho * r) + lam * K * r**2 + lz * rho**2, r

    if constraint == "sphere" or lz == 0:
        loss, r = at_norm(radius)
        return loss, r, radius
    lo, hi = 0.0, radius  # golden section for the feature norm on the ball
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if at_norm(a)[0] < at_norm(b)[0] else (a, hi)
    rho = 0.5 * (lo + hi)
    loss, r = at_norm(rho)
    return loss, r, rho


def etf_gram(K: int) -> np.ndarray:
    """Gram of the unit simplex ETF: 1 on the diagonal, ``-1/(K-1)`` off it."""
    return (K * np.eye(K) - np.ones((K, K))) / (K - 1)


def of_gram(K: int) -> np.ndarray:
    """Gram of the orthogonal frame: the identity."""
    return np.eye(K)


def etf_delta_gm(K: int) -> float:
    """Delta_GM of a simplex ETF: ``sqrt(2 - 2 sqrt((K-1)/K))``."""
    return float(np.sqrt(2 - 2 * np.sqrt((K - 1) / K)))
