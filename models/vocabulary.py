"""Id vocabularies: raw ids to model indices (sorted vocabulary position + 1; 0 = unknown), and the id tables
whose row 0 is that unknown id."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def index(vocab: np.ndarray, ids) -> np.ndarray:
    """Model indices of raw ids: position in the sorted vocabulary + 1, or 0 for unknown ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(vocab) == 0:
        return np.zeros(len(ids), np.int64)
    pos = np.clip(np.searchsorted(vocab, ids), 0, len(vocab) - 1)
    return np.where(vocab[pos] == ids, pos + 1, 0)


def embedding(n: int, d: int) -> nn.Embedding:
    """An id table whose row 0 (unknown) stays zero and never learns, so unknown ids add nothing."""
    # padding_idx=0: the "unknown" row stays zero and never learns, so unknown ids add nothing
    emb = nn.Embedding(n, d, padding_idx=0)
    nn.init.trunc_normal_(emb.weight, std=0.01)
    with torch.no_grad():
        emb.weight[0].zero_()
    return emb
