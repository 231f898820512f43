import numpy as np
import pytest

from ufm import geometry, theory


def etf_means(K, d, rng):
    """K unit vectors forming a simplex ETF, randomly rotated into R^d (d >= K-1)."""
    E = np.eye(K) - 1.0 / K
    E /= np.linalg.norm(E, axis=1, keepdims=True)  # rows in the K-1 dim subspace orthogonal to 1
    Q, _ = np.linalg.qr(rng.normal(size=(max(d, K), max(d, K))))
    B, _ = np.linalg.qr(np.eye(K) - 1.0 / K)  # orthonormal basis: columns span 1-perp
    coords = E @ B[:, : K - 1]  # (K, K-1)
    return np.pad(coords, ((0, 0), (0, d - K + 1))) @ Q[:d, :d]


def collapse(means, counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    return means[labels], labels


@pytest.mark.parametrize("K", [2, 3, 5])
def test_metrics_at_constructed_etf(K):
    rng = np.random.default_rng(K)
    Z, y = collapse(etf_means(K, K + 1, rng), [3] * K)
    G = geometry.mean_cosines(Z, y)
    assert np.allclose(G, theory.etf_gram(K), atol=1e-12)
    assert geometry.etf_distance(Z, y) == pytest.approx(0.0, abs=1e-12)
    assert geometry.nc1(Z, y) == pytest.approx(0.0, abs=1e-20)
    assert geometry.delta_gm(Z, y) == pytest.approx(theory.etf_delta_gm(K), abs=1e-12)


@pytest.mark.parametrize("counts", [[5, 5, 5], [30, 3, 1, 7]])
def test_metrics_at_constructed_of(counts):
    rng = np.random.default_rng(0)
    K = len(counts)
    Q, _ = np.linalg.qr(rng.normal(size=(K + 2, K + 2)))
    Z, y = collapse(Q[:K], counts)
    assert geometry.delta_gm(Z, y) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(geometry.mean_cosines(Z, y), np.eye(K), atol=1e-12)
    # centred by the plain mean of class means an OF *is* an ETF (documented); sample-weighted it is not
    assert geometry.etf_distance(Z, y) == pytest.approx(0.0, abs=1e-12)
    if len(set(counts)) > 1:
        assert geometry.etf_distance(Z, y, weighting="samples") > 1e-3


def test_nc1_positive_when_not_collapsed_and_scale_free():
    rng = np.random.default_rng(3)
    means = etf_means(4, 6, rng)
    Z, y = collapse(means, [6] * 4)
    noisy = Z + 0.1 * rng.normal(size=Z.shape)
    v = geometry.nc1(noisy, y)
    assert v > 1e-3
    assert geometry.nc1(3.0 * noisy, y) == pytest.approx(v, rel=1e-10)
    # by hand: Tr(Sigma_W Sigma_B^+)/K
    mu = geometry.class_means(noisy, y)
    D = noisy - mu[y]
    C = mu - mu.mean(0)
    want = np.trace(D.T @ D / len(y) @ np.linalg.pinv(C.T @ C / 4)) / 4
    assert v == pytest.approx(want, rel=1e-8)


def test_weighting_matters_under_imbalance():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(40, 5))
    y = np.repeat([0, 1, 2], [30, 5, 5])
    a, b = geometry.nc1(Z, y, weighting="classes"), geometry.nc1(Z, y, weighting="samples")
    assert a != pytest.approx(b, rel=1e-3)
    with pytest.raises(ValueError, match="weighting"):
        geometry.nc1(Z, y, weighting="median")


def test_classifier_norms_and_report_keys():
    W = np.array([[3.0, 4.0], [0.0, 2.0]])
    assert geometry.classifier_norms(W).tolist() == [5.0, 2.0]
    Z, y = collapse(np.eye(2), [2, 2])
    rep = geometry.report(Z, y, W=W)
    assert set(rep) >= {"mean_cosines", "nc1", "delta_gm", "etf_distance", "classifier_norms"}
    assert geometry.report(Z, y)["classifier_norms"] is None


# -- plain-loop references (the formulas of docs/theory.md written out sample by sample) --------------------------------
def _means_loops(Z, y, K):
    d = len(Z[0])
    sums, n = [[0.0] * d for _ in range(K)], [0] * K
    for z, c in zip(Z, y):
        n[c] += 1
        for k in range(d):
            sums[c][k] += float(z[k])
    return [[s / n[c] for s in sums[c]] for c in range(K)], n


def _global_mean_loops(Z, mu, n, weighting):
    d, K, N = len(mu[0]), len(mu), sum(n)
    if weighting == "classes":  # the plain mean of the class means (Papyan)
        return [sum(mu[c][k] for c in range(K)) / K for k in range(d)]
    # sample-weighted (Zhu et al.): the mean of all rows
    return [sum(float(z[k]) for z in Z) / N for k in range(d)]


def nc1_loops(Z, y, weighting):
    """``Tr(Sigma_W Sigma_B^+) / K`` with ``Sigma_W = (1/N) sum_i (z_i - mu_{y_i})(...)ᵀ`` and
    ``Sigma_B = (1/K) sum_c (mu_c - mu_G)(...)ᵀ``, term by term; the pseudo-inverse through the eigenvectors of
    ``Sigma_B`` with a nonzero eigenvalue."""
    y = [int(c) for c in y]
    K, N, d = max(y) + 1, len(y), len(Z[0])
    mu, n = _means_loops(Z, y, K)
    mu_g = _global_mean_loops(Z, mu, n, weighting)
    sw = [[0.0] * d for _ in range(d)]
    for z, c in zip(Z, y):
        v = [float(z[k]) - mu[c][k] for k in range(d)]
        for a in range(d):
            for b in range(d):
                sw[a][b] += v[a] * v[b] / N
    sb = [[0.0] * d for _ in range(d)]
    for c in range(K):
        v = [mu[c][k] - mu_g[k] for k in range(d)]
        for a in range(d):
            for b in range(d):
                sb[a][b] += v[a] * v[b] / K
    lam, V = np.linalg.eigh(np.array(sb))
    total = 0.0
    for j in range(d):
        if lam[j] > 1e-9 * lam.max():
            v = V[:, j]
            total += sum(v[a] * sw[a][b] * v[b] for a in range(d) for b in range(d)) / lam[j]
    return total / K


def etf_distance_loops(Z, y, weighting):
    """The distance of the Gram of the class means, centred at the chosen global mean (then Frobenius-normalised),
    to the simplex-ETF Gram, term by term."""
    y = [int(c) for c in y]
    K = max(y) + 1
    M, n = _means_loops(Z, y, K)
    d = len(M[0])
    g = _global_mean_loops(Z, M, n, weighting)
    C = [[M[c][k] - g[k] for k in range(d)] for c in range(K)]
    G = [[sum(C[a][k] * C[b][k] for k in range(d)) for b in range(K)] for a in range(K)]
    nrm = np.sqrt(sum(G[a][b] ** 2 for a in range(K) for b in range(K)))
    t = 1.0 / np.sqrt(K - 1)
    return np.sqrt(sum((G[a][b] / nrm - t * ((a == b) - 1.0 / K)) ** 2 for a in range(K) for b in range(K)))


@pytest.mark.parametrize("counts", [[30, 5, 5], [17, 3, 8, 1], [2, 40, 6, 9, 3]])
@pytest.mark.parametrize("seed", [0, 1])
def test_nc1_and_etf_distance_match_plain_loops_under_imbalance(counts, seed):
    """Both global means on imbalanced counts and random rows: the default is the plain mean of the class means,
    ``weighting="samples"`` the mean of all rows; they must differ here, so a swap is caught."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    Z = rng.normal(size=(len(y), len(counts) + 2)) + rng.normal(size=(len(counts), len(counts) + 2))[y]
    want = {w: nc1_loops(Z, y, w) for w in ("classes", "samples")}
    assert want["classes"] != pytest.approx(want["samples"], rel=1e-2)
    assert geometry.nc1(Z, y) == pytest.approx(want["classes"], rel=1e-9)  # the default
    for w in ("classes", "samples"):
        assert geometry.nc1(Z, y, weighting=w) == pytest.approx(want[w], rel=1e-9)
        assert geometry.etf_distance(Z, y, weighting=w) == pytest.approx(etf_distance_loops(Z, y, w), rel=1e-9)
    assert geometry.etf_distance(Z, y) == pytest.approx(etf_distance_loops(Z, y, "classes"), rel=1e-9)
    assert etf_distance_loops(Z, y, "classes") != pytest.approx(etf_distance_loops(Z, y, "samples"), rel=1e-3)
    rep = geometry.report(Z, y)  # the report: normalised rows, the plain mean of class means, and says so
    assert rep["global_mean"] == "classes"
    assert rep["nc1"] == pytest.approx(nc1_loops(geometry.normalize_rows(Z), y, "classes"), rel=1e-9)


# -- the anchors' code, line for line (tests/anchors.py) -------------------------------------------------------------
def _imbalanced(counts, seed, d):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(y)
    Z = rng.normal(size=(len(y), d)) + 1.5 * rng.normal(size=(len(counts), d))[y]
    return Z, y


ANCHOR_CASES = [([30, 5, 5], 0, 5), ([17, 3, 8, 1], 1, 7), ([2, 40, 6, 9, 3], 2, 4), ([1, 1, 12, 4], 3, 9)]


@pytest.mark.parametrize("counts,seed,d", ANCHOR_CASES)
def test_delta_gm_and_etf_distance_are_kini_et_al_code(counts, seed, d):
    """``delta_gm`` = ``calculate_Gram_Comparison(M, G_OF, centering=False)`` and ``etf_distance`` = the same with
    ``G_etf, centering=True``, M the class means of the L2-normalised rows (not re-normalised), to 1e-12; also
    ``simplex_etf_error`` of rhubarbwu/neural-collapse. The re-normalised variant differs (another name)."""
    import anchors

    Z, y = _imbalanced(counts, seed, d)
    K = len(counts)
    X = geometry.normalize_rows(Z)
    M = anchors.kini_M(Z, y, K)
    assert M.shape == (d, K) and d != K  # the anchor transposes only when d != K
    want = anchors.kini_calculate_Gram_Comparison([M], anchors.kini_G_OF(K), centering=False)[0]
    assert geometry.delta_gm(X, y, K) == pytest.approx(want, abs=1e-12)
    assert geometry.report(Z, y)["delta_gm"] == pytest.approx(want, abs=1e-12)
    assert abs(geometry.delta_gm_renormalised(X, y, K) - want) > 1e-6  # a different quantity here
    want_etf = anchors.kini_calculate_Gram_Comparison([M], anchors.kini_G_etf(K), centering=True)[0]
    assert geometry.etf_distance(X, y, K) == pytest.approx(want_etf, abs=1e-12)
    assert geometry.report(Z, y)["etf_distance"] == pytest.approx(want_etf, abs=1e-12)
    means, mG = anchors.rw_means(X, y, K)
    assert geometry.etf_distance(X, y, K) == pytest.approx(anchors.rw_simplex_etf_error(means, mG), abs=1e-12)


@pytest.mark.parametrize("counts,seed,d", ANCHOR_CASES)
def test_nc1_is_papyan_as_the_anchors_compute_it(counts, seed, d):
    """``nc1(weighting="samples")`` = tding1/Neural-Collapse's ``collapse_metric``; the default (``"classes"``) =
    ``covariance_ratio`` of rhubarbwu/neural-collapse with ``MeanAccumulator.compute()``'s global mean; 1e-12
    relative."""
    import anchors

    Z, y = _imbalanced(counts, seed, d)
    K = len(counts)
    assert geometry.nc1(Z, y, K, weighting="samples") == pytest.approx(anchors.tding_collapse_metric(Z, y, K),
                                                                        rel=1e-12, abs=1e-12)
    means, mG = anchors.rw_means(Z, y, K)
    V = anchors.rw_covar_within(Z, y, means, K)
    assert geometry.nc1(Z, y, K) == pytest.approx(anchors.rw_covariance_ratio(V, means, mG), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("counts,seed,d", ANCHOR_CASES)
def test_nc4_is_the_mismatch_rate(counts, seed, d):
    """``nc4`` = 1 - ``clf_ncc_agreement`` of rhubarbwu/neural-collapse (the agreement rate), for a random
    classifier and one near the class means (both nonzero here)."""
    import anchors

    Z, y = _imbalanced(counts, seed, d)
    K = len(counts)
    rng = np.random.default_rng(seed + 10)
    means, _ = anchors.rw_means(Z, y, K)
    for W in (rng.normal(size=(K, d)), means.numpy() + 0.3 * rng.normal(size=(K, d))):
        agree = anchors.rw_clf_ncc_agreement(Z, y, W, means, K)
        assert geometry.nc4(Z, W, y, K) == pytest.approx(1.0 - agree, abs=1e-12)
        assert 0.0 < agree < 1.0 or geometry.nc4(Z, W, y, K) in (0.0, 1.0)


def test_nc3_is_the_square_of_classifier_mean_distance():
    """NC3 as Zhu et al. define it (the paper's formula; their code logs another quantity), term by term."""
    Z, y = _imbalanced([9, 2, 5], 4, 6)
    W = np.random.default_rng(5).normal(size=(3, 6))
    mu = np.array([Z[y == c].mean(0) for c in range(3)])
    for weighting, g in (("classes", mu.mean(0)), ("samples", Z.mean(0))):
        M = mu - g
        want = sum((W[c, k] / np.sqrt((W ** 2).sum()) - M[c, k] / np.sqrt((M ** 2).sum())) ** 2
                   for c in range(3) for k in range(6))
        assert geometry.nc3(Z, W, y, weighting=weighting) == pytest.approx(want, rel=1e-12)
        assert geometry.classifier_mean_distance(Z, W, y, weighting=weighting) == pytest.approx(np.sqrt(want),
                                                                                              rel=1e-12)
