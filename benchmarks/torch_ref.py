"""PyTorch baselines (optional ``bench`` extra): a SupContrast-style SC step and a projected-gradient solver.

``supcon_loss`` follows ``HobbitLong/SupContrast`` ``SupConLoss`` with one view, line for line (``N x N`` masks,
row max *including* the diagonal, as there). With ``base_temperature = tau`` its value is ufm's ``L`` (mean over
anchors, anchors without positives count 0; docs/theory.md §2).

``solve_pgd`` is ufm's default algorithm written in eager PyTorch: rows of ``Z`` move by ``N * grad``, the
projection onto the (non-negative) sphere, Armijo backtracking (halve until
``f(x+) <= f(x) + <g, d> + ||d||^2 / (2 eta)``), growth 1.25 after an accepted step, the same stopping test.
The difference from ``solvers.pgd.solve`` is the engine (eager PyTorch vs one jit-compiled XLA loop).
"""
from __future__ import annotations

import math
import time

import torch


def supcon_loss(features, labels, temperature, base_temperature=None):
    """SupContrast's ``SupConLoss.forward`` for ``features`` ``(bsz, d)`` (one view), ``labels`` ``(bsz,)``."""
    base_temperature = temperature if base_temperature is None else base_temperature
    device = features.device
    batch_size = features.shape[0]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float().to(device)
    anchor_feature = contrast_feature = features
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size, device=device).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mask_pos_pairs = mask.sum(1)
    mask_pos_pairs = torch.where(mask_pos_pairs < 1e-6, 1, mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.mean()


def step(Z, labels, tau):
    """One loss + gradient evaluation (the unit timed by the benchmarks); returns (loss, grad)."""
    Z = Z.detach().requires_grad_(True)
    loss = supcon_loss(Z, labels, tau)
    loss.backward()
    return loss.detach(), Z.grad


def project(Z, radius=1.0, nonneg=True):
    """Rows onto the (non-negative) sphere; an all-zero row goes to ``radius * e_argmax`` (ufm's rule)."""
    X = Z.clamp_min(0) if nonneg else Z
    norm = X.norm(dim=1, keepdim=True)
    fallback = radius * torch.nn.functional.one_hot(Z.argmax(dim=1), Z.shape[1]).to(Z.dtype)
    return torch.where(norm > 0, X * (radius / torch.where(norm > 0, norm, 1.0)), fallback)


def solve_pgd(labels, tau, dim, *, seed=0, steps=5000, tol=1e-12, radius=1.0, nonneg=True, dtype=torch.float64,
              max_seconds=float("inf"), device="cpu"):
    """ufm's projected gradient in eager PyTorch. Returns ``(Z, loss, steps, seconds)``; gives up after
    ``max_seconds``."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels).to(device)
    N = labels.shape[0]
    Z = torch.randn(N, dim, generator=gen, dtype=dtype).to(device)
    Z = project(Z.abs() if nonneg else Z, radius, nonneg)
    f, g = step(Z, labels, tau)
    eta0 = tau / radius ** 2
    eta = eta0
    eps = torch.finfo(dtype).eps
    t = 0
    for t in range(1, steps + 1):
        G = N * g
        while True:
            Zn = project(Z - eta * G, radius, nonneg)
            fn, gn = step(Zn, labels, tau)
            d = Zn - Z
            ok = fn <= f + (g * d).sum() + (d * d).sum() / (2 * eta * N) + 10 * eps * abs(f)
            if ok or eta < eta0 * 0.5 ** 50:
                break
            eta *= 0.5
        if not ok:  # no step decreases the loss: numerically stationary
            break
        gm = math.sqrt(float((d * d).sum()) / N) / eta * eta0
        small = gm <= math.sqrt(tol) * radius and abs(float(fn - f)) <= tol * (1 + abs(float(f)))
        Z, f, g = Zn, fn, gn
        eta = min(eta * 1.25, 1000 * eta0)
        if small or time.perf_counter() - start > max_seconds:
            break
    return Z, float(f), t, time.perf_counter() - start
