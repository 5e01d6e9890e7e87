"""Side features of a fit: encoding metadata and rows (models/features.py), rating-count statistics, and the
side tables by model index."""

from __future__ import annotations

import numpy as np

from models import features as fx
from models.config import ModelConfig


def encode_side(config: ModelConfig, user_features, item_features, counts: dict) -> dict:
    """Encoding metadata and encoded rows of the fit-time side features, and rating-count statistics.

    With use_side_info each side table also gets a column of log(1 + training ratings of the id),
    z-scored: how much a user rates or an item is rated says something of the ratings (popular films
    are rated higher), and it needs nothing beyond the ratings.
    """
    side: dict = {}
    if not config.use_side_info:
        return side
    if user_features is not None:
        meta = fx.fit_user_meta(user_features)
        ids, rows = fx.encode_users(user_features, meta)
        side.update(user_meta=meta, user_feature_ids=ids, user_rows=rows)
    if item_features is not None:
        meta = fx.fit_item_meta(item_features)
        ids, rows = fx.encode_items(item_features, meta)
        side.update(item_meta=meta, item_feature_ids=ids, item_rows=rows)
    for who, n in counts.items():
        logc = np.log1p(n[1:].astype(np.float64))          # known ids only
        side[f"{who}_count_z"] = [float(logc.min()), float(logc.mean()), float(logc.std() or 1.0)]
    return side


def side_dims(side: dict) -> tuple[int, int]:
    """Widths of the user and item side tables: feature columns, plus the count column."""
    return tuple((side[f"{who}_rows"].shape[1] if f"{who}_rows" in side else 0) + (f"{who}_count_z" in side)
                 for who in ("user", "item"))


def side_table(side: dict, who: str, vocab: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Side table by model index [len(vocab) + 1, width]; row 0 (unknown) gets the mean features, lowest count."""
    parts = []
    if f"{who}_rows" in side:
        parts.append(fx.table_by_index(vocab, side[f"{who}_feature_ids"], side[f"{who}_rows"]))
    if f"{who}_count_z" in side:
        low, mean, std = side[f"{who}_count_z"]
        logc = np.maximum(np.log1p(counts.astype(np.float64)), low)   # unknown: as the least-rated known id
        parts.append(((logc - mean) / std).astype(np.float32)[:, None])
    return np.concatenate(parts, 1) if parts else None


def has_side_rows(side: dict, who: str) -> bool:
    """Whether the model's `who` ('user' | 'item') part reads side rows: features or rating-count statistics."""
    return f"{who}_rows" in side or f"{who}_count_z" in side


def side_rows(side: dict, who: str, table: np.ndarray, ids: np.ndarray, idx: np.ndarray,
              given: dict | None) -> np.ndarray:
    """Side rows [n, d] of raw ids (model indices idx) for a part that has them (has_side_rows): the model's
    table for known ids; for unknown ids (idx 0) the fit-time features, then `given` features (raw columns, as
    fitted), the later source winning."""
    rows = table[idx]
    unknown = idx == 0
    if unknown.any() and f"{who}_rows" in side:
        sources = [(side[f"{who}_feature_ids"], side[f"{who}_rows"])]
        if given is not None:
            meta = side[f"{who}_meta"]
            sources.append(fx.encode_users(given, meta) if who == "user" else fx.encode_items(given, meta))
        for fid, frows in sources:
            found, r = fx.lookup(ids[unknown], fid, frows)
            sub = rows[unknown]
            sub[found, :r.shape[1]] = r[found]   # feature columns first; the count column keeps row 0's
            rows[unknown] = sub
    return rows
