"""Warm start: a new model starts from a fitted one's parameters, per-id rows matched by raw id."""

from __future__ import annotations

import numpy as np
import torch

from models.collab import DotProductBias
from models.vocabulary import index

# parameters with one row per model index (row 0 = unknown), by the vocabulary that indexes them (warm start)
USER_ROWS = ("user_factors.weight", "user_bias.weight", "item_ratings.weight.weight")
ITEM_ROWS = ("item_factors.weight", "item_bias.weight", "user_ratings.weight.weight")




def warm_start(model: torch.nn.Module, init, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
    """Copy init's parameters into model: per-id rows by raw id (ids init never saw keep their fresh
    rows), every other parameter as it is. Buffers (side tables, rating columns) come from the new data."""
    kind = "dot_bias" if isinstance(model, DotProductBias) else "embedding_nn"
    if init.config.kind != kind:
        raise ValueError(f"warm start needs a {kind} model to start from, got a {init.config.kind} one")
    old = dict(init.model.named_parameters())
    moves = {}
    for names, vocab, old_vocab in ((USER_ROWS, user_ids, init.user_ids), (ITEM_ROWS, item_ids, init.item_ids)):
        new_rows = index(vocab, old_vocab)                       # [len(old_vocab)] row here, 0 = id gone
        kept = new_rows > 0
        moves.update({n: (torch.as_tensor(new_rows[kept]), torch.as_tensor(np.flatnonzero(kept) + 1)) for n in names})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (src := old.get(name)) is None:
                continue
            src = src.detach().to(p.device)
            if name in moves and src.shape[1:] == p.shape[1:]:
                dst_rows, src_rows = moves[name]
                p[dst_rows.to(p.device)] = src[src_rows.to(p.device)]
            elif name not in moves and src.shape == p.shape:
                p.copy_(src)
            else:
                raise ValueError(f"warm start: parameter {name} is {tuple(src.shape)} in the model to start from "
                                 f"but {tuple(p.shape)} here (different side features or embedding widths)")
