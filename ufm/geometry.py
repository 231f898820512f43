"""Geometry of embeddings: class means, mean cosines, NC1, NC3, NC4, distance to the OF and to the simplex ETF.

Functions of NumPy arrays (``Z (N, d)``, ``labels (N,)`` ints in ``0..K-1``, ``W (K, d)``); they know nothing
about solvers. docs/theory.md §7.

**As the anchors compute them.** Every metric that carries a paper's name computes what that paper's authors'
code computes, and ``tests/anchors.py`` holds line-for-line transcriptions of that code to test it against:
``delta_gm`` is Kini et al.'s ``calculate_Gram_Comparison(M, G_OF, centering=False)`` (class means of the rows
as given, *not* re-normalised), ``etf_distance`` their ``centering=True`` comparison with the simplex-ETF Gram
(the same number as ``simplex_etf_error`` of ``rhubarbwu/neural-collapse``), ``nc1`` Papyan et al.'s
``Tr(Sigma_W Sigma_B^+) / K`` (``tding1/Neural-Collapse``, ``rhubarbwu/neural-collapse``), ``nc4`` Papyan et al.'s
*mismatch* rate between the classifier and the nearest class mean (one minus the agreement of
``rhubarbwu/neural-collapse``). Variants ufm keeps carry names of their own (``delta_gm_renormalised``).

**Rows.** The metrics take the rows as given. Kini et al. apply theirs to the L2-normalised outputs of the
network; :func:`report` normalises the rows first (``normalize=True``, the SC convention).

**Global mean.** ``weighting="classes"`` (default) takes the plain mean of the class means (Kini et al.'s code,
``MeanAccumulator.compute()`` of ``rhubarbwu/neural-collapse``); ``weighting="samples"`` the sample-weighted mean
of all rows (Papyan et al., ``tding1/Neural-Collapse``). They differ under imbalance. ``nc1``, ``nc3`` and
``etf_distance`` take the choice as an argument.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["class_means", "mean_cosines", "nc1", "nc3", "classifier_mean_distance", "nc4", "delta_gm",
           "delta_gm_renormalised", "etf_distance", "classifier_norms", "normalize_rows", "gram_distance",
           "cosine_groups", "report"]


def _num_classes(labels, K):
    return int(np.max(labels)) + 1 if K is None else K


def normalize_rows(Z: ArrayLike) -> np.ndarray:
    """Rows divided by their norms (zero rows stay zero). ``(N, d) -> (N, d)``."""
    Z = np.asarray(Z, dtype=np.float64)
    n = np.linalg.norm(Z, axis=1, keepdims=True)
    return np.divide(Z, n, out=np.zeros_like(Z), where=n > 0)


def class_means(Z: ArrayLike, labels: ArrayLike, K: int | None = None) -> np.ndarray:
    """Class means ``mu_c`` as a ``(K, d)`` array (a class with no sample gives a zero row)."""
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    K = _num_classes(labels, K)
    sums = np.zeros((K, Z.shape[1]))
    np.add.at(sums, labels, Z)
    n = np.bincount(labels, minlength=K)[:, None]
    return sums / np.maximum(n, 1)


def _global_mean(mu, labels, weighting):
    if weighting == "classes":
        return mu.mean(axis=0)
    if weighting == "samples":
        n = np.bincount(labels, minlength=mu.shape[0])
        return (n @ mu) / n.sum()
    raise ValueError(f"weighting must be 'classes' or 'samples', got {weighting!r}")


def mean_cosines(Z: ArrayLike, labels: ArrayLike, K: int | None = None) -> np.ndarray:
    """``(K, K)`` Gram ``MᵀM`` of the normalised class means: cosines between class means (1 on the diagonal)."""
    M = normalize_rows(class_means(Z, labels, K))
    return M @ M.T


def nc1(Z: ArrayLike, labels: ArrayLike, K: int | None = None, weighting: str = "classes") -> float:
    """NC1 of Papyan et al. (2020): ``Tr(Sigma_W Sigma_B^+) / K`` (0 at within-class collapse).

    ``Sigma_W = (1/N) sum_i (z_i - mu_{y_i})(...)ᵀ``, ``Sigma_B = (1/K) sum_c (mu_c - mu_G)(...)ᵀ``, with the
    global mean ``mu_G`` chosen by ``weighting`` (module doc: ``"samples"`` is ``tding1/Neural-Collapse``'s
    ``validate_NC.py``, ``"classes"`` the default of ``rhubarbwu/neural-collapse``). The pseudo-inverse drops
    eigenvalues below ``1e-10`` times the largest (the anchors' cutoff is ``d`` machine epsilons; they agree
    whenever ``Sigma_B`` has no eigenvalue in between, e.g. on generic rows). Kini et al.'s code logs the trace
    without the ``1/K``.

    References:
      Papyan, Han, Donoho (2020), Prevalence of neural collapse during the terminal phase of deep learning training.
    """
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    mu = class_means(Z, labels, K)
    D = Z - mu[labels]
    sigma_w = D.T @ D / Z.shape[0]
    C = mu - _global_mean(mu, labels, weighting)
    sigma_b = C.T @ C / mu.shape[0]
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / mu.shape[0])


def gram_distance(A: ArrayLike, B: ArrayLike) -> float:
    """``|| A / ||A||_F - B / ||B||_F ||_F``: the distance between two Gram matrices up to scale (in [0, 2]).
    ``delta_gm`` is ``gram_distance(MᵀM, I)``."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return float(np.linalg.norm(A / np.linalg.norm(A) - B / np.linalg.norm(B)))


def cosine_groups(mean_cosines: ArrayLike, majority: ArrayLike) -> dict:
    """Means of the off-diagonal entries of a class-mean cosine matrix ``(K, K)`` over the class pairs of each
    kind: ``maj_maj``, ``maj_min``, ``min_min`` (None where a kind has no pair). ``majority``: ``(K,)`` bools."""
    C = np.asarray(mean_cosines)
    maj = np.asarray(majority, dtype=bool)
    off = ~np.eye(len(maj), dtype=bool)

    def mean(a, b):
        m = np.outer(a, b) & off
        return float(C[m].mean()) if m.any() else None

    return {"maj_maj": mean(maj, maj), "maj_min": mean(maj, ~maj), "min_min": mean(~maj, ~maj)}


def delta_gm(Z: ArrayLike, labels: ArrayLike, K: int | None = None) -> float:
    """Delta_GM of Kini et al. (2024): ``|| M Mᵀ / ||M Mᵀ||_F - I_K / sqrt(K) ||_F``, ``M (K, d)`` the class means
    of the rows as given (not re-normalised); 0 at an orthogonal frame.

    Their code (``calculate_Gram_Comparison(M, G_OF, centering=False)``, ``SCL_Geometry_And_Batching``) takes
    the means of the network's L2-normalised outputs: pass normalised rows (:func:`report` does). Under
    within-class spread the means are shorter than 1 and unequal, which this keeps and
    :func:`delta_gm_renormalised` removes.

    References:
      Kini, Vakilian, Behnia, Gill, Thrampoulidis (2024), Symmetric neural-collapse representations with
      supervised contrastive loss: the impact of ReLU and batching.
    """
    M = class_means(Z, labels, K)
    return gram_distance(M @ M.T, np.eye(M.shape[0]))


def delta_gm_renormalised(Z: ArrayLike, labels: ArrayLike, K: int | None = None) -> float:
    """``|| C / ||C||_F - I_K / sqrt(K) ||_F`` with ``C = mean_cosines(Z, labels)``, the Gram of the class means
    each divided by its norm: :func:`delta_gm` with the means re-normalised (not Kini et al.'s metric; the two
    agree when the class means have equal norms, e.g. at within-class collapse on a sphere). It depends on the
    directions of the means only, so it is what a reference that returns only ``mean_cosines`` gives."""
    G = mean_cosines(Z, labels, K)
    return gram_distance(G, np.eye(G.shape[0]))


def etf_distance(Z: ArrayLike, labels: ArrayLike, K: int | None = None, weighting: str = "classes") -> float:
    """``|| G_c / ||G_c||_F - (I - 11ᵀ/K) / sqrt(K-1) ||_F``, ``G_c = (M - mu_G)(M - mu_G)ᵀ`` the Gram of the class
    means ``M (K, d)`` of the rows as given, centred at the global mean ``mu_G`` (``weighting``, module doc) and
    then normalised (by the Frobenius norm of their Gram). 0 at a simplex ETF.

    With ``weighting="classes"`` this is Kini et al.'s ``calculate_Gram_Comparison(M, G_etf, centering=True)``
    (``SCL_Geometry_And_Batching``) and ``simplex_etf_error(M, m_G)`` of ``rhubarbwu/neural-collapse`` with its
    default global mean; Papyan et al. measure the same simplex through the cosines of the means centred at the
    global mean (``weighting="samples"``). Note: an orthogonal frame centred by the plain mean of its class means
    *is* a simplex ETF, so this is 0 there too with ``weighting="classes"``; use ``delta_gm`` or ``mean_cosines``
    to tell OF from ETF. Returns 0.0 for a single class.
    """
    labels = np.asarray(labels)
    M = class_means(Z, labels, K)
    K = M.shape[0]
    if K < 2:
        return 0.0
    C = M - _global_mean(M, labels, weighting)
    G = C @ C.T
    nrm = np.linalg.norm(G)
    target = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    if nrm == 0:
        return float(np.linalg.norm(target))
    return float(np.linalg.norm(G / nrm - target))


def classifier_mean_distance(Z: ArrayLike, W: ArrayLike, labels: ArrayLike, K: int | None = None,
                             weighting: str = "classes") -> float:
    """``|| W/||W||_F - M_c/||M_c||_F ||_F``: the distance between the classifier ``W (K, d)`` and the class means
    ``M_c (K, d)`` of ``Z`` centred at the global mean (``weighting``, module doc), each scaled to unit Frobenius
    norm (a distance, in [0, 2]; NaN when either is zero). Its square is :func:`nc3`."""
    labels = np.asarray(labels)
    mu = class_means(Z, labels, K)
    M = mu - _global_mean(mu, labels, weighting)
    W = np.asarray(W, dtype=np.float64)
    nw, nm = np.linalg.norm(W), np.linalg.norm(M)
    if nw == 0 or nm == 0:
        return float("nan")
    return float(np.linalg.norm(W / nw - M / nm))


def nc3(Z: ArrayLike, W: ArrayLike, labels: ArrayLike, K: int | None = None, weighting: str = "classes") -> float:
    """NC3 as Zhu et al. (2021) define it: ``|| W/||W||_F - M_c/||M_c||_F ||_F^2`` (the square of
    :func:`classifier_mean_distance`), ``M_c (K, d)`` the class means of ``Z`` centred at the global mean: 0 when
    the classifier is aligned with the centred means (NaN when either is zero). Their experiments are balanced,
    where both ``weighting`` choices agree; their released code logs a different quantity (the distance of
    ``W M_cᵀ`` to the simplex-ETF Gram), which ufm does not compute.

    References:
      Zhu, Ding, Zhou, Li, You, Sulam, Qu (2021), A geometric analysis of neural collapse with unconstrained
      features.
    """
    v = classifier_mean_distance(Z, W, labels, K, weighting)
    return float(v * v)


def nc4(Z: ArrayLike, W: ArrayLike, labels: ArrayLike, K: int | None = None) -> float:
    """NC4 as Papyan et al. (2020) plot it: the *mismatch* rate, the fraction of rows ``z_i`` of ``Z (N, d)``
    whose classifier prediction ``argmax_c <w_c, z_i>`` (``W (K, d)``, no bias) is not their nearest class mean
    (Euclidean, means of ``Z``); 0 at collapse. ``1 - nc4`` is ``clf_ncc_agreement`` of
    ``rhubarbwu/neural-collapse`` (weighted by samples). Ties go to the lowest class index on both sides.

    References:
      Papyan, Han, Donoho (2020), Prevalence of neural collapse during the terminal phase of deep learning training.
    """
    Z = np.asarray(Z, dtype=np.float64)
    mu = class_means(Z, labels, K)
    pred = np.argmax(Z @ np.asarray(W, dtype=np.float64).T, axis=1)
    d2 = (Z ** 2).sum(1)[:, None] + (mu ** 2).sum(1)[None, :] - 2 * Z @ mu.T
    return float(np.mean(pred != np.argmin(d2, axis=1)))


def classifier_norms(W: ArrayLike) -> np.ndarray:
    """Row norms ``||w_c||`` of the classifier ``W (K, d)``."""
    return np.linalg.norm(np.asarray(W, dtype=np.float64), axis=1)


def report(Z: ArrayLike, labels: ArrayLike, K: int | None = None, W: ArrayLike | None = None,
           normalize: bool = True) -> dict:
    """All metrics as a JSON-ready dict: ``mean_cosines`` (K x K list), ``nc1``, ``delta_gm``,
    ``etf_distance``, ``classifier_norms`` (list, or None without ``W``), ``global_mean`` (``"classes"``).

    ``normalize=True`` normalises the rows first (the SC convention: geometry of directions).
    """
    X = normalize_rows(Z) if normalize else np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    return {
        "mean_cosines": mean_cosines(X, labels, K).tolist(),
        "nc1": nc1(X, labels, K),
        "delta_gm": delta_gm(X, labels, K),
        "etf_distance": etf_distance(X, labels, K),
        "classifier_norms": None if W is None else classifier_norms(W).tolist(),
        "global_mean": "classes",
    }
