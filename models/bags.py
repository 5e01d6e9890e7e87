"""Rating bags: a sparse linear layer over each row's column of training ratings (AutoRec's encoder), and the
CSR of the training ratings it reads."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.vocabulary import embedding


class RatingBags(nn.Module):
    """Sparse linear layer over each item's column of training ratings (AutoRec's encoder).

    Item i's code is |R(i)|^-1/2 * sum over its raters u of value(u, i) * weight[u]: one learnt row per user,
    value = rating - offset (`ratings_by_item`). CSR by item: raters members[indptr[i]:indptr[i+1]], sorted;
    `set_ratings` installs them.
    """

    def __init__(self, n_rows: int, n_members: int, width: int, dense_limit: int = 0):
        super().__init__()
        self.weight = embedding(n_members, width)
        # dense_limit: keep a dense copy [n_rows, n_members] of the ratings when it has at most this many entries
        # (0: never), and code a batch as one gather + matmul: at ML-100k (1.6M entries) ~3x faster than
        # embedding_bag, whose backward sorts. Same codes, up to float summation order.
        self.dense_limit = dense_limit
        self.dense = None
        self.register_buffer("indptr", torch.zeros(n_rows + 1, dtype=torch.long))
        self.register_buffer("members", torch.zeros(0, dtype=torch.long))
        self.register_buffer("values", torch.zeros(0))
        self.register_buffer("keys", torch.zeros(0, dtype=torch.long), persistent=False)

    def set_ratings(self, indptr, members, values):
        """Install the ratings: CSR over model indices, members sorted within a row, values (`ratings_by_item`)."""
        dev = self.indptr.device
        self.indptr, self.members, self.values = indptr.to(dev), members.to(dev), values.to(dev).float()
        # row * n_members + member is ascending over the CSR, so a pair's rating is one searchsorted away
        rows = torch.repeat_interleave(torch.arange(len(self.indptr) - 1, device=dev), self.indptr.diff())
        self.keys = rows * self.weight.num_embeddings + self.members
        n_rows, n_members = len(self.indptr) - 1, self.weight.num_embeddings
        self.dense = None   # a plain attribute, not a buffer: the state dict keeps only the CSR
        if n_rows * n_members <= self.dense_limit:
            self.dense = torch.zeros(n_rows, n_members, device=dev)                        # [n_rows, n_members]
            self.dense[rows, self.members] = self.values

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)   # .to(device) moves the dense copy with the buffers
        if self.dense is not None:
            self.dense = fn(self.dense)
        return out

    def forward(self, rows, leave_out=None):
        """Codes [B, width] of rows[B]; leave_out[B]: a member whose own rating is left out of the sum."""
        uniq, inv = torch.unique(rows, return_inverse=True)                    # a batch repeats rows
        start = self.indptr[uniq]
        length = self.indptr[uniq + 1] - start                                 # [U]
        if self.dense is not None:
            # index_select, not [...]: a row copy, several times faster than advanced indexing on the CPU
            bags = (self.dense.index_select(0, uniq) @ self.weight.weight).index_select(0, inv)  # [B, width]
            return self._finish(bags, rows, length[inv].float(), leave_out)
        offsets = torch.cumsum(length, 0) - length                             # bag starts in the flat list
        flat = torch.repeat_interleave(start - offsets, length) + torch.arange(
            int(length.sum()), device=rows.device)                              # [sum(length)] CSR positions
        bags = F.embedding_bag(self.members[flat], self.weight.weight, offsets, mode="sum",
                               per_sample_weights=self.values[flat])[inv]       # [B, width]
        return self._finish(bags, rows, length[inv].float(), leave_out)

    def _finish(self, bags, rows, n, leave_out):
        """Sums [B, width] of the rows' bags, bag sizes n [B] -> codes: leave_out's rating out, scaled by n^-1/2."""
        if leave_out is not None:
            r, found = self.rating_of(rows, leave_out)
            bags = bags - r[:, None] * self.weight(leave_out)
            n = n - found.float()
        return bags * n.clamp(min=1).rsqrt()[:, None]

    def rating_of(self, rows, members):
        """(value [B], found [B] bool) of the pairs (rows[B], members[B]); value 0 where not found."""
        if len(self.keys) == 0:
            none = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
            return none.float(), none
        key = rows * self.weight.num_embeddings + members
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        found = self.keys[pos] == key
        return torch.where(found, self.values[pos], torch.zeros((), device=rows.device)), found


def ratings_by_item(ui: np.ndarray, ii: np.ndarray, ratings: np.ndarray, n_items: int, device,
                    offset: float | None = None):
    """CSR by item of the training ratings (indptr, users sorted within an item, values), as tensors.

    values = ratings - offset; None: the ratings' mean. Centred, a bag codes how its row was rated; offset 0 (raw
    stars, as AutoRec's input) it also codes which members are in it, since every value is then >= 1."""
    order = np.lexsort((ui, ii))
    indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(ii, minlength=n_items), out=indptr[1:])
    values = (ratings - (ratings.mean() if offset is None else offset)).astype(np.float32)
    return (torch.as_tensor(indptr, device=device), torch.as_tensor(ui[order], device=device),
            torch.as_tensor(values[order], device=device))
