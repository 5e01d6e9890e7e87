"""EASE (Steck 2019) baseline: closed-form item-item model, B = -P / diag(P), P = (XᵀX + λI)⁻¹, diag(B) = 0."""

from __future__ import annotations

import numpy as np


def fit_ease(X: np.ndarray, lam: float = 500.0) -> np.ndarray:
    """Item-item weights B [I, I] from a binary user×item matrix X [U, I]."""
    G = X.T.astype(np.float64) @ X.astype(np.float64)
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]   # column j scaled by -1/P_jj
    B[np.diag_indices_from(B)] = 0.0
    return B


def recommend_ease(X: np.ndarray, B: np.ndarray, k: int) -> np.ndarray:
    """Top-k item columns per user [U, k], the user's own items excluded."""
    scores = X @ B
    scores[X > 0] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)
