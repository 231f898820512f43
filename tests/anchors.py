"""The anchors' metric code, transcribed line for line (tests only): what ``ufm.geometry`` is compared with.

Each function names its source (repository, file, function). The transcriptions keep the anchors' operations
and their order; the only changes are the ones that let them run here: ``.cuda()`` dropped, float64 tensors
instead of float32 (the anchors accumulate in their tensors' dtype), the data loaders replaced by one array.
"""
import numpy as np
import scipy.linalg as scilin
import torch


# -- valavakilian/SCL_Geometry_And_Batching (Kini et al. 2024) ---------------------------------------------------
def kini_calculate_Gram_Comparison(vector_list, G_comparitor, centering=False):
    """graphs/create_graphs.py, ``calculate_Gram_Comparison`` (verbatim). ``vector_list``: a list of ``M``
    arrays of shape ``(d, K)`` (the logger's ``M = torch.stack(mean).T``, class means of the model's
    L2-normalised outputs). Note: with ``d == K`` the code does not transpose and compares ``M Mᵀ`` (d x d)."""
    G_Comparison_list = []
    d_G = G_comparitor.shape[0]
    for vector in vector_list:

        if centering:
            vector_center = np.mean(vector, axis=1).reshape((-1, 1))
            vector = vector - vector_center

        if vector.shape[0] != d_G:
            vector = vector.T

        G_vector = vector @ vector.T
        G_vector_normalized = G_vector / np.linalg.norm(G_vector, ord="fro")

        G_comparison = G_vector_normalized - G_comparitor
        G_Comparison_list.append(np.linalg.norm(G_comparison, ord="fro"))

    return G_Comparison_list


def kini_G_OF(K):
    """graphs/create_graphs.py, ``main``: ``G_OF = np.eye(K) / ||np.eye(K)||_F``."""
    G_OF = np.eye(K)
    return G_OF / np.linalg.norm(G_OF, ord="fro")


def kini_G_etf(K):
    """graphs/create_graphs.py, ``main``: ``G_etf = (I - 11ᵀ/K) / ||.||_F``."""
    G_etf = np.eye(K) - 1 / K * np.ones((K, K))
    return G_etf / np.linalg.norm(G_etf, ord="fro")


def kini_M(Z, labels, K):
    """code/utils.py, ``analysis`` ('Mean' pass): per-class sums of the (already normalised) outputs divided by
    the counts, stacked as columns: ``M = torch.stack(mean).T`` of shape ``(d, K)``; models.py normalises the
    outputs with ``F.normalize(x, dim=1)``."""
    h = torch.nn.functional.normalize(torch.as_tensor(np.asarray(Z, dtype=np.float64)), dim=1)
    target = torch.as_tensor(np.asarray(labels))
    mean = [0 for _ in range(K)]
    n_c = {c: 0 for c in range(K)}
    for c in range(0, K):
        idxs = (target == c).nonzero(as_tuple=True)[0]
        h_c = h[idxs, :].double()
        mean[c] += torch.sum(h_c, dim=0)
        n_c[c] += h_c.shape[0]
    for c in range(K):
        mean[c] /= n_c[c]
    return torch.stack(mean).T.numpy()


# -- rhubarbwu/neural-collapse ---------------------------------------------------------------------------------------
def _rw_class_idxs(ns_samples, X, Y, n_classes):
    """neural_collapse/accumulate.py, ``Accumulator.class_idxs``."""
    Y = Y.squeeze()
    assert X.shape[0] == Y.shape[0]
    Y_range = torch.arange(n_classes, dtype=torch.int32)
    idxs = (Y[:, None] == Y_range.to(Y.device))
    ns_samples += torch.sum(idxs, dim=0, dtype=torch.int32)[:, None].squeeze()
    return idxs


def _rw_compute(ns_samples, totals, dtype, weighted=False):
    """neural_collapse/accumulate.py, ``Accumulator.compute`` (no ``idxs``)."""
    if len(totals.shape) > 1:
        ns_samples = ns_samples.unsqueeze(1)
    eps = torch.finfo(dtype).eps
    avg = totals / (ns_samples + eps).to(dtype)  # (K, D)
    if weighted:
        avg_G = ns_samples.to(dtype) @ avg / (ns_samples.sum() + eps)  # (D)
    else:
        avg_G = avg.mean(dim=0)  # (D)
    return avg, avg_G


def rw_means(X, Y, K, weighted=False):
    """``MeanAccumulator(K, d, dtype=float64).accumulate(X, Y); .compute(weighted)``: ``(means (K, d), mG (d))``.
    (The examples call ``compute()``: the plain mean of the class means; ``weighted=True`` fails on a 2-D total in
    the anchor, so only the default is used.)"""
    X, Y = torch.as_tensor(np.asarray(X, dtype=np.float64)), torch.as_tensor(np.asarray(Y))
    dtype = torch.float64
    ns = torch.zeros(K, dtype=torch.int32)
    totals = torch.zeros(K, X.shape[1], dtype=dtype)
    idxs = _rw_class_idxs(ns, X, Y, K).mT.to(dtype)  # (K,B)
    totals += idxs @ X.to(dtype=dtype)  # (K,D)
    return _rw_compute(ns, totals, dtype, weighted)


def rw_covar_within(X, Y, M, K):
    """``CovarAccumulator(K, d, dtype=float64, M=M).accumulate(X, Y, M); .compute()``."""
    X, Y = torch.as_tensor(np.asarray(X, dtype=np.float64)), torch.as_tensor(np.asarray(Y))
    dtype = torch.float64
    ns = torch.zeros(K, dtype=torch.int32)
    totals = torch.zeros(X.shape[1], X.shape[1], dtype=dtype)
    _rw_class_idxs(ns, X, Y, K)
    diff = X - M[Y]  # (B,D)
    totals += diff.mT @ diff  # (D,D)
    eps = torch.finfo(dtype).eps
    return totals / (ns.sum() + eps).to(dtype)


def rw_covariance_ratio(V_intra, M, m_G=0):
    """neural_collapse/measure.py, ``covariance_ratio(..., metric="pinv")`` (Papyan et al. 2020)."""
    (K, _), M_centred = M.shape, M - m_G
    V_inter = M_centred.mT @ M_centred / K
    V_intra = V_intra.to(V_inter.device)
    prod = torch.linalg.pinv(V_inter) @ V_intra
    return torch.trace(prod).item() / K


def rw_structure_error(A, B):
    """neural_collapse/measure.py, ``structure_error``."""
    from math import sqrt

    (K, _) = A.shape
    struct = B.to(A.device) @ A.mT  # (K,K)
    struct /= torch.linalg.matrix_norm(struct)
    struct += 1 / K / sqrt(K - 1)
    struct.diagonal().sub_(1 / sqrt(K - 1))
    return torch.linalg.matrix_norm(struct).item()


def rw_simplex_etf_error(M, m_G=0):
    """neural_collapse/measure.py, ``simplex_etf_error``."""
    M_centred = M - m_G
    return rw_structure_error(M_centred, M_centred)


def rw_clf_ncc_agreement(X, Y, W, M, K):
    """``DecAccumulator(K, d, dtype=float64, M=M, W=W).accumulate(X, Y, W, M)`` without FAISS (the manual
    nearest class centre), then ``clf_ncc_agreement(accum)`` (``weighted=True``): the agreement rate."""
    X, Y = torch.as_tensor(np.asarray(X, dtype=np.float64)), torch.as_tensor(np.asarray(Y))
    W = torch.as_tensor(np.asarray(W, dtype=np.float64))
    dtype = torch.float64
    ns = torch.zeros(K, dtype=torch.int32)
    totals = torch.zeros(K, dtype=torch.int32)
    dots = torch.inner(X, M)  # (B,K)
    feats, centre = torch.norm(X, dim=-1) ** 2, torch.norm(M, dim=-1) ** 2  # (B), (K)
    dists = feats.unsqueeze(1) + centre.unsqueeze(0) - 2 * dots  # (B,K)
    Y_ncc = dists.argmin(dim=-1)  # (B)
    Y_lin = (X @ W.mT).argmax(dim=-1)  # (B)
    matches = (Y_lin == Y_ncc).to(torch.int32)  # (B)
    _rw_class_idxs(ns, X, Y, K)
    totals.scatter_add_(0, Y.to(torch.int64), matches)
    _, global_agree_rates = _rw_compute(ns, totals, dtype, weighted=True)
    return global_agree_rates.item()


# -- tding1/Neural-Collapse (Zhu et al. 2021) -------------------------------------------------------------------------
def tding_collapse_metric(Z, labels, K):
    """validate_NC.py: ``compute_info`` (``mu_G`` the mean of all rows, ``mu_c`` the class means),
    ``compute_Sigma_W``, ``compute_Sigma_B``, then ``np.trace(Sigma_W @ scilin.pinv(Sigma_B)) / K``."""
    features = torch.as_tensor(np.asarray(Z, dtype=np.float64))
    targets = torch.as_tensor(np.asarray(labels))
    counts = np.bincount(np.asarray(labels), minlength=K)
    mu_G = 0
    mu_c_dict = dict()
    mu_G += torch.sum(features, dim=0)
    for b in range(len(targets)):
        y = targets[b].item()
        if y not in mu_c_dict:
            mu_c_dict[y] = features[b, :].clone()  # the anchor adds into the feature row in place; a copy here
        else:
            mu_c_dict[y] += features[b, :]
    mu_G /= sum(counts)
    for i in range(len(counts)):
        mu_c_dict[i] /= counts[i]
    Sigma_W = 0
    for b in range(len(targets)):
        y = targets[b].item()
        Sigma_W += (features[b, :] - mu_c_dict[y]).unsqueeze(1) @ (features[b, :] - mu_c_dict[y]).unsqueeze(0)
    Sigma_W /= sum(counts)
    Sigma_W = Sigma_W.cpu().numpy()
    Sigma_B = 0
    for i in range(K):
        Sigma_B += (mu_c_dict[i] - mu_G).unsqueeze(1) @ (mu_c_dict[i] - mu_G).unsqueeze(0)
    Sigma_B /= K
    Sigma_B = Sigma_B.cpu().numpy()
    return np.trace(Sigma_W @ scilin.pinv(Sigma_B)) / len(mu_c_dict)
