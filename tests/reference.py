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


def bcl_avg_loss_loops(Z, labels, tau, batches=None):
    """The class-averaging part of the balanced contrastive loss (``bcl-avg``, no prototypes) term by term: mean over anchor slots of
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


def balscl_forward(centers, features, targets, num_classes, temperature):
    """Zhu et al.'s ``BalSCL.forward`` (github.com/FlamieZhu/Balanced-Contrastive-Learning, ``loss/contrastive.py``)
    transcribed line for line into NumPy. ``features`` is ``(batch, views, d)`` as in their training script
    (``views = 2`` there; ``views = 1`` is ufm's reading); ``centers`` ``(K, d)``; ``targets`` ``(batch,)``. Their
    ``2`` (the two views) is ``views`` here; nothing else changes. Returns their scalar loss."""
    features = np.asarray(features, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    views = features.shape[1]
    batch_size = features.shape[0]
    targets = np.asarray(targets).reshape(-1, 1)
    targets_centers = np.arange(num_classes).reshape(-1, 1)
    targets = np.concatenate([np.tile(targets, (views, 1)), targets_centers], axis=0)
    batch_cls_count = np.eye(num_classes)[targets].sum(axis=0).squeeze()

    mask = (targets[:views * batch_size] == targets.T).astype(np.float64)
    logits_mask = np.ones_like(mask)
    logits_mask[np.arange(batch_size * views), np.arange(batch_size * views)] = 0  # torch.scatter(..., 1, arange, 0)
    mask = mask * logits_mask

    # class-complement
    features = np.concatenate([features[:, v] for v in range(views)], axis=0)  # torch.cat(torch.unbind(f, 1), 0)
    features = np.concatenate([features, centers], axis=0)
    logits = features[:views * batch_size] @ features.T
    logits = logits / temperature

    # For numerical stability
    logits_max = np.max(logits, axis=1, keepdims=True)
    logits = logits - logits_max

    # class-averaging
    exp_logits = np.exp(logits) * logits_mask
    per_ins_weight = np.broadcast_to(
        np.array([batch_cls_count[i] for i in targets.ravel()]).reshape(1, -1),
        (views * batch_size, views * batch_size + num_classes)) - mask
    exp_logits_sum = (exp_logits / per_ins_weight).sum(axis=1, keepdims=True)

    log_prob = logits - np.log(exp_logits_sum)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)

    loss = - mean_log_prob_pos
    loss = loss.reshape(views, batch_size).mean()
    return float(loss)


def bcl_loss_loops(Z, labels, tau, prototypes, batches=None):
    """The balanced contrastive loss of Zhu et al., one view, ufm normalisation: :func:`balscl_forward` on each
    batch (its samples as one view, all ``K`` prototypes), the batches' values weighted by their sizes (the mean
    over anchor slots)."""
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    C = np.asarray(prototypes, dtype=np.float64)
    if batches is None:
        batches = [list(range(len(labels)))]
    total, slots = 0.0, 0
    for B in batches:
        B = [i for i in B if i >= 0]
        total += len(B) * balscl_forward(C, Z[B][:, None, :], labels[B], C.shape[0], tau)
        slots += len(B)
    return total / slots
