"""Slow, obviously-correct references: plain Python loops over the formulas of docs/theory.md. Tests only."""
import math

import numpy as np


def sc_loss_loops(Z, labels, tau, batches=None):
    """docs/theory.md §2 term by term: mean over anchor slots of
    ``(1/|P|) sum_{j in P} [-s_ij + log sum_{k in B, k != i} exp(s_ik)]``."""
    Z = np.asarray(Z, dtype=np.float64)
    labels = [int(y) for y in labels]
    if batches is None:
        batches = [list(range(len(labels)))]
    total, slots = 0.0, 0
    for B in batches:
        B = [i for i in B if i >= 0]
        for i in B:
            slots += 1
            P = [j for j in B if j != i and labels[j] == labels[i]]
            if not P:
                continue
            s = lambda a, b: float(Z[a] @ Z[b]) / tau  # noqa: E731
            others = [s(i, k) for k in B if k != i]
            m = max(others)
            lse = m + math.log(sum(math.exp(v - m) for v in others))
            total += sum(-s(i, j) + lse for j in P) / len(P)
    return total / slots


def ce_loss_loops(Z, W, labels, bias=None):
    """Mean over samples of ``-log softmax(W z_i + b)_{y_i}``."""
    Z, W = np.asarray(Z, dtype=np.float64), np.asarray(W, dtype=np.float64)
    K = W.shape[0]
    b = np.zeros(K) if bias is None else np.asarray(bias, dtype=np.float64)
    total = 0.0
    for z, y in zip(Z, labels):
        logits = [float(W[c] @ z) + b[c] for c in range(K)]
        m = max(logits)
        total += m + math.log(sum(math.exp(v - m) for v in logits)) - logits[int(y)]
    return total / len(Z)


def bcl_loss_loops(Z, labels, tau, batches=None):
    """The balanced contrastive loss (class-averaging form) term by term: mean over anchor slots of
    ``(1/|P|) sum_{p in P} [-s_ip + log sum_c (1/|B_c minus i|) sum_{k in B_c, k != i} exp(s_ik)]``."""
    Z = np.asarray(Z, dtype=np.float64)
    labels = [int(y) for y in labels]
    if batches is None:
        batches = [list(range(len(labels)))]
    total, slots = 0.0, 0
    for B in batches:
        B = [i for i in B if i >= 0]
        for i in B:
            slots += 1
            P = [j for j in B if j != i and labels[j] == labels[i]]
            if not P:
                continue
            s = lambda a, b: float(Z[a] @ Z[b]) / tau  # noqa: E731
            denom = 0.0
            for c in sorted({labels[k] for k in B}):
                members = [k for k in B if k != i and labels[k] == c]
                if members:
                    denom += sum(math.exp(s(i, k)) for k in members) / len(members)
            total += sum(-s(i, j) + math.log(denom) for j in P) / len(P)
    return total / slots
