"""Chunked, vectorised top-k over a catalogue with per-row exclusions (CSR)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# Scores held at once per chunk: 2**25 float32 = 128 MiB (scores + topk work space fit in memory).
DEFAULT_BUDGET = 2 ** 25


def csr_from_pairs(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr [n_rows+1], indices) of the pairs (rows[j], cols[j]); rows in 0..n_rows-1."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols[order]


def chunk_rows(n_cols: int, budget: int = DEFAULT_BUDGET, width: int = 1) -> int:
    """Rows per chunk so that rows * n_cols * width floats stay within budget."""
    return max(1, budget // max(1, n_cols * width))


def topk(score_chunk: Callable[[int, int], torch.Tensor], n_rows: int, n_cols: int, k: int, *,
         exclude: tuple[np.ndarray, np.ndarray] | None = None, chunk_size: int | None = None,
         device=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row of a score matrix produced chunk by chunk.

    score_chunk(start, stop) -> Tensor [stop-start, n_cols] on `device`. exclude = (indptr, indices),
    CSR over rows: those columns get -inf before topk. Returns (cols int64 [n_rows, k'], scores
    float32 [n_rows, k']) sorted by descending score, k' = min(k, n_cols); a row with fewer than k'
    allowed columns ends with -inf scores (callers drop them).
    """
    k = min(k, n_cols)
    chunk = chunk_size or chunk_rows(n_cols)
    out_cols = np.empty((n_rows, k), dtype=np.int64)
    out_scores = np.empty((n_rows, k), dtype=np.float32)
    if exclude is not None:
        indptr = torch.as_tensor(np.asarray(exclude[0], dtype=np.int64))
        indices = torch.as_tensor(np.asarray(exclude[1], dtype=np.int64))
    for start in range(0, n_rows, chunk):
        stop = min(n_rows, start + chunk)
        scores = score_chunk(start, stop).float()                        # [c, n_cols]
        if exclude is not None:
            a, b = int(indptr[start]), int(indptr[stop])
            if b > a:
                counts = indptr[start + 1:stop + 1] - indptr[start:stop]  # [c]
                rows = torch.repeat_interleave(torch.arange(stop - start), counts)
                scores.index_put_((rows.to(scores.device), indices[a:b].to(scores.device)),
                                  torch.tensor(float("-inf"), device=scores.device))
        vals, idx = torch.topk(scores, k, dim=1)                         # sorted, descending
        out_cols[start:stop] = idx.cpu().numpy()
        out_scores[start:stop] = vals.cpu().numpy()
    return out_cols, out_scores


def topk_dot(user_vecs, item_vecs, k: int, *, user_bias=None, item_bias=None,
             exclude: tuple[np.ndarray, np.ndarray] | None = None, chunk_size: int | None = None,
             device=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per user for scores user_vecs[U,d] @ item_vecs[I,d]^T + user_bias[U] + item_bias[I].

    Arrays or tensors in; computed on `device` (default: CUDA when present). Same outputs as `topk`.
    """
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    U = torch.as_tensor(user_vecs, dtype=torch.float32)           # stays on host; chunks move
    V = torch.as_tensor(item_vecs, dtype=torch.float32).to(dev)   # [I, d]
    bi = None if item_bias is None else torch.as_tensor(item_bias, dtype=torch.float32).to(dev)
    bu = None if user_bias is None else torch.as_tensor(user_bias, dtype=torch.float32)

    def score_chunk(start, stop):
        s = U[start:stop].to(dev) @ V.T                          # [c, I]
        if bi is not None:
            s += bi[None, :]
        if bu is not None:
            s += bu[start:stop].to(dev)[:, None]
        return s

    return topk(score_chunk, len(U), len(V), k, exclude=exclude, chunk_size=chunk_size, device=dev)
