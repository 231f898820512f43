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
