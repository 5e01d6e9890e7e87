"""The torch module of a config (dot_bias or embedding_nn), with sparse gradients where the config asks."""

from __future__ import annotations

import torch

from models.collab import DotProductBias, EmbeddingNN, emb_size
from models import time_features
from models.config import DotConfig, ModelConfig, Mse

SPARSE_EMBEDDINGS = ("user_factors", "item_factors", "user_bias", "item_bias")  # per-id tables (train.sparse_grad)


def build_model(config: ModelConfig, n_users: int, n_items: int, user_side_dim: int = 0,
                item_side_dim: int = 0) -> torch.nn.Module:
    """The module for a config; n_users/n_items include the unknown row 0."""
    if isinstance(config, DotConfig):
        # a ranking loss never squashes its scores; (0, 5.5) only keeps forward() defined
        y_range = config.loss.y_range if isinstance(config.loss, Mse) else Mse().y_range
        model = DotProductBias(n_users, n_items, config.n_factors, y_range, config.rating_input,
                               user_side_dim, item_side_dim, item_bias_weight=1 + config.popularity_boost)
    else:
        us = config.n_factors or emb_size(n_users)
        its = config.n_factors or emb_size(n_items)
        model = EmbeddingNN(n_users, n_items, us, its, config.layers, config.dropout, config.loss.y_range,
                            user_side_dim, item_side_dim, config.id_dropout, config.biases, config.item_bag,
                            config.user_bag, config.product, time_features.WIDTH if config.time_features else 0,
                            config.time_dropout)
    if config.train.sparse_grad:  # same parameters and state dict; only the gradients' layout changes
        for name in SPARSE_EMBEDDINGS:
            if isinstance(emb := getattr(model, name, None), torch.nn.Embedding):
                emb.sparse = True
    return model
