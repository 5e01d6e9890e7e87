"""An item-item term for the dot model's lists: a linear autoencoder over who rated what, and in which order.

B [I, I] is EDLAE (Steck 2020, "Autoencoders that don't overfit towards the identity"): the closed-form
item-item regression of EASE with dropout's diagonal penalty, on a Gram matrix that also counts the pairs a
user rated within `window` positions of each other in time (the MovieLens pages rated in one sitting). A
user's term is (their rated items) @ B. Fitted in one matrix inverse, no training loop; why it is there and
how its constants were chosen: bench/results/published_quality.md.
"""

from __future__ import annotations

import numpy as np
import torch

DROPOUT = 0.67      # EDLAE's emphasised dropout p: the diagonal also gets p / (1 - p) × each item's own count
ADJACENCY = 1.0     # weight of a time-adjacent pair against a plain co-rating
POPULARITY = -0.1   # a positive term is multiplied by (item's rating count) ** this
USER_CHUNK = 4096   # users whose dense rows are held at once while counting co-ratings


def adjacent_pairs(user_idx: np.ndarray, item_idx: np.ndarray, order: np.ndarray, n_items: int,
                   window: int) -> np.ndarray:
    """Counts float64 [n_items, n_items], symmetric: the pairs each user rated within `window` positions of
    each other, positions by `order` (rating time), then item index for ties."""
    by = np.lexsort((item_idx, order, user_idx))
    u, i = user_idx[by], item_idx[by]
    counts = np.zeros(n_items * n_items, np.float64)
    for offset in range(1, window + 1):
        same = u[:-offset] == u[offset:]
        counts += np.bincount(i[:-offset][same] * n_items + i[offset:][same], minlength=n_items * n_items)
    counts = counts.reshape(n_items, n_items)
    return counts + counts.T


def fit(user_idx: np.ndarray, item_idx: np.ndarray, order: np.ndarray, n_items: int, window: int, *, l2: float,
        device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B float32 [n_items, n_items] with a zero diagonal, popularity weights float32 [n_items]) from one
    (user, item) pair per rating, indices 0..n_items-1; `order` sorts each user's ratings in time; l2 is λ,
    added to the Gram matrix's diagonal (ModelConfig.item_item_l2)."""
    dev = torch.device(device or "cpu")
    gram = torch.zeros(n_items, n_items, dtype=torch.float64, device=dev)   # [I, I] co-rating counts
    by_user = np.argsort(user_idx, kind="stable")
    u, i = user_idx[by_user], item_idx[by_user]
    bounds = np.searchsorted(u, np.arange(0, int(u[-1]) + USER_CHUNK + 1, USER_CHUNK))
    for a, b in zip(bounds[:-1], bounds[1:]):                            # dense rows a chunk of users at a time
        if b > a:
            x = torch.zeros(int(u[b - 1] - u[a]) + 1, n_items, device=dev)  # [c, I] binary
            x[torch.as_tensor(u[a:b] - u[a], device=dev), torch.as_tensor(i[a:b], device=dev)] = 1.0
            gram += (x.T @ x).double()                                   # exact: counts < 2**24
    if window:
        gram += ADJACENCY * torch.as_tensor(adjacent_pairs(user_idx, item_idx, order, n_items, window), device=dev)
    own = torch.diagonal(gram).clone()                                   # each item's rating count
    p = torch.linalg.inv(gram + torch.diag(l2 + DROPOUT / (1 - DROPOUT) * own))
    b = -p / torch.diagonal(p)[None, :]                                  # B_ij = -P_ij / P_jj
    b.fill_diagonal_(0.0)
    return b.float(), (own.clamp(min=1.0) ** POPULARITY).float()


def scores(history: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Term float32 [c, I] for users' binary histories [c, I]: history @ B, a positive term times the
    item's popularity weight (a negative one as it is)."""
    s = history @ b                                                      # [c, I]
    return torch.where(s > 0, s * weight[None, :], s)


def fit_part(user_idx: np.ndarray, item_idx: np.ndarray, order: np.ndarray, n_items: int, window: int,
             max_items: int, *, l2: float, device=None) -> dict:
    """The term over the `max_items` most-rated items (the inverse costs items³): {"items": their columns
    int64 [m], "b": B [m, m], "weight": [m]}; an item outside it scores 0 (the matrix has no row for it)."""
    counts = np.bincount(item_idx, minlength=n_items)
    items = np.sort(np.argsort(-counts, kind="stable")[:max_items]) if n_items > max_items else np.arange(n_items)
    column = np.full(n_items, -1, np.int64)
    column[items] = np.arange(len(items))
    keep = column[item_idx] >= 0
    b, weight = fit(user_idx[keep], column[item_idx[keep]], order[keep], len(items), window, l2=l2, device=device)
    return {"items": torch.as_tensor(items), "b": b.cpu(), "weight": weight.cpu()}


def _standardised(s: torch.Tensor, unrated: torch.Tensor) -> torch.Tensor:
    """Each row of s [c, I] as z-scores over its unrated items (so two differently scaled scores add up)."""
    n = unrated.sum(1, keepdim=True).clamp(min=1)
    mean = (s * unrated).sum(1, keepdim=True) / n
    std = ((((s - mean) * unrated) ** 2).sum(1, keepdim=True) / n).sqrt()
    return (s - mean) / std.clamp(min=1e-6)   # a constant row (a term with nothing to say) stays 0, not noise / 1e-9


def blend(dot: torch.Tensor, history: torch.Tensor, part: dict, weight: float) -> torch.Tensor:
    """Scores [c, I]: z(dot) + weight · z(term), each standardised over the user's unrated items; history is
    the users' binary rated items [c, I] (all zeros: the dot model's order)."""
    cols = part["items"].to(dot.device)
    term = torch.zeros_like(dot)
    term[:, cols] = scores(history[:, cols], part["b"].to(dot.device), part["weight"].to(dot.device))
    unrated = history == 0
    return _standardised(dot, unrated) + weight * _standardised(term, unrated)
