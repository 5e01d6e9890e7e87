"""Collaborative-filtering modules (fastai collab lineage). Index 0 of every id is "unknown"."""

from __future__ import annotations

import torch
from torch import nn

from models.bags import RatingBags
from models.vocabulary import embedding


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Sigmoid squashed into (low, high), as in fastai."""
    return torch.sigmoid(x) * (high - low) + low


def emb_size(n: int) -> int:
    """fastai's rule of thumb for an embedding width given n categories."""
    return min(600, round(1.6 * n ** 0.56))


class SideTable(nn.Module):
    """Side-feature rows by model index (row 0 = unknown); rows given at call time replace the table's."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.register_buffer("table", torch.zeros(n, dim))   # [n, dim], filled by set_table

    def set_table(self, table: torch.Tensor):
        """Install the rows [n, dim] (copy_ keeps the buffer and its device)."""
        self.table.copy_(table)

    def forward(self, idx, given=None):
        """Rows [B, dim] of idx[B], or the given rows [B, dim] (a cold id's features)."""
        return self.table[idx] if given is None else given


class SideOffset(SideTable):
    """(vector [B, width], bias [B]) offsets from a linear map of the side rows (SVDFeature-style)."""

    def __init__(self, n: int, dim: int, width: int):
        super().__init__(n, dim)
        self.linear = nn.Linear(dim, width + 1, bias=False)   # one output per factor, then the bias
        nn.init.zeros_(self.linear.weight)                     # starts as the model without side features

    def forward(self, idx, given=None):
        s = self.linear(super().forward(idx, given))           # [B, width + 1]
        return s[:, :-1], s[:, -1]


class DotProductBias(nn.Module):
    """Rating = sigmoid_range(user·item + user bias + item bias + global bias).

    rating_input: an item's vector also adds the code of its column of training ratings (`RatingBags`),
    AutoRec-style; while training, the target rating is left out of its own item's code (left in, the
    model learns to read the answer off the input, which it never sees at test time).
    user_side_dim/item_side_dim > 0: a `SideOffset` of the id's features adds to its vector and bias, so
    rare and unseen ids start from what they are.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int, y_range=(0.0, 5.5), rating_input: bool = False,
                 user_side_dim: int = 0, item_side_dim: int = 0, item_bias_weight: float = 1.0):
        super().__init__()
        self.item_bias_weight = item_bias_weight   # score_all: the item bias counts this much (1 + popularity boost)
        # n_users/n_items count the unknown row 0
        self.user_factors = embedding(n_users, n_factors)
        self.item_factors = embedding(n_items, n_factors)
        self.user_bias = embedding(n_users, 1)
        self.item_bias = embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.y_range = tuple(y_range)
        self.item_ratings = RatingBags(n_items, n_users, n_factors) if rating_input else None
        # None without side features: a plain model's state dict has no side keys
        self.user_side = SideOffset(n_users, user_side_dim, n_factors) if user_side_dim > 0 else None
        self.item_side = SideOffset(n_items, item_side_dim, n_factors) if item_side_dim > 0 else None

    def user_terms(self, users, user_side=None):
        """(vectors [B, d], biases [B]) of users: own factors and bias, plus the side offsets."""
        p, b = self.user_factors(users), self.user_bias(users)[:, 0]
        if self.user_side is not None:
            dp, db = self.user_side(users, user_side)
            p, b = p + dp, b + db
        return p, b

    def item_terms(self, items, leave_out=None, item_side=None):
        """(vectors [C, d], biases [C]) of items: own factors and bias, the rating-column code, the side offsets."""
        q, b = self.item_factors(items), self.item_bias(items)[:, 0]
        if self.item_ratings is not None:
            q = q + self.item_ratings(items, leave_out)
        if self.item_side is not None:
            dq, db = self.item_side(items, item_side)
            q, b = q + dq, b + db
        return q, b

    def item_vectors(self, items, leave_out=None, item_side=None):
        """Item vectors [C, d] (the first half of item_terms)."""
        return self.item_terms(items, leave_out, item_side)[0]

    def raw(self, users, items, user_side=None, item_side=None):
        """Pre-sigmoid score [B] of pairs users[B], items[B]."""
        p, bu = self.user_terms(users, user_side)                                           # [B, d], [B]
        q, bi = self.item_terms(items, users if self.training else None, item_side)        # [B, d], [B]
        return (p * q).sum(-1) + bu + bi + self.global_bias

    def raw_all(self, users, items, user_side=None, item_side=None):
        """Pre-sigmoid scores [B, C] of every user in users[B] against every item in items[C]."""
        p, bu = self.user_terms(users, user_side)                                           # [B, d], [B]
        q, bi = self.item_terms(items, None, item_side)                                     # [C, d], [C]
        return p @ q.T + bi[None, :] + (bu + self.global_bias)[:, None]

    def forward(self, users, items, user_side=None, item_side=None):
        return sigmoid_range(self.raw(users, items, user_side, item_side), *self.y_range)

    def all_items(self):
        """(vectors [I, d], biases [I]) of every known item (model rows 1..I), for score_all."""
        return self.item_terms(torch.arange(1, self.item_factors.num_embeddings, device=self.global_bias.device))

    def score_all(self, users, all_items, user_side=None):
        """Pre-sigmoid scores [B, I] of users[B] against every known item, the item bias weighted item_bias_weight."""
        p, bu = self.user_terms(users, user_side)                                           # [B, d], [B]
        q, bi = all_items                                                                   # [I, d], [I]
        return p @ q.T + (bi * self.item_bias_weight)[None, :] + (bu + self.global_bias)[:, None]

    score_width = 1   # floats of work space per score in score_all (chunk sizing)

    def item_space(self):
        """Item vectors [I, d] the dot product ranks with (with rating_input, the rating-column codes added)."""
        return self.all_items()[0]


class EmbeddingNN(nn.Module):
    """Concatenated user and item embeddings (+ optional side features) through an MLP.

    Optional rating-model parts (all off by default, so older model files keep their keys and load):
    - bias: learnt user, item and global biases added to the MLP's output before the sigmoid, as in the dot
      model: the MLP then models the interaction, not the large per-id offsets it learns slowly on its own.
    - item_bag > 0: the item's column of training ratings coded by a `RatingBags` (one learnt row per user,
      AutoRec's item encoder) and concatenated into the item half of the MLP's input.
    - user_bag > 0: the same for the user's row of training ratings (one learnt row per item), as raw stars
      (Recommender.fit): the code then says which films the user rated as well as how (centred, a 3- and a
      4-star rating read about -0.5 and +0.5 and the choice itself is nearly lost).
    - product > 0: the element-wise product of a learnt projection of the user half's input and one of the
      item half's (each `product` wide) also enters the first layer, as NeuMF's GMF vector: an MLP over
      concatenated inputs learns a dot product poorly, and here it need not.
    - time_dim > 0: features of the rating's time (models/time_features.py, `when` [B, time_dim]) in the user
      half of the input; without them (None) the half reads zeros, "time unknown". While training, time_dropout
      of the pairs, and every pair whose user id is hidden, read zeros too: serving asks without a time.
    While training, a pair's own rating is left out of both codes (left in, the model learns to read the
    answer off its input, which it never sees at test time). An unknown id (index 0) has a zero embedding,
    zero bias and an empty bag, so it is scored from its side features alone.
    """

    def __init__(self, n_users: int, n_items: int, user_size: int, item_size: int, layers=(100,),
                 dropout: float = 0.1, y_range=(0.0, 5.5), user_side_dim: int = 0, item_side_dim: int = 0,
                 id_dropout: float = 0.0, bias: bool = False, item_bag: int = 0, user_bag: int = 0,
                 product: int = 0, time_dim: int = 0, time_dropout: float = 0.0):
        super().__init__()
        self.user_factors = embedding(n_users, user_size)
        self.item_factors = embedding(n_items, item_size)
        self.user_side = SideTable(n_users, user_side_dim)   # [n_users, du]; du = 0 without side features
        self.item_side = SideTable(n_items, item_side_dim)   # [n_items, di]
        # None when off: a model without them has no such keys in its state dict
        # dense bag copies up to 2^24 entries (64 MiB; ML-100k: 1.6M), embedding_bag beyond
        self.item_ratings = RatingBags(n_items, n_users, item_bag, 1 << 24) if item_bag > 0 else None  # rows: items
        self.user_ratings = RatingBags(n_users, n_items, user_bag, 1 << 24) if user_bag > 0 else None  # rows: users
        self.user_bias = embedding(n_users, 1) if bias else None
        self.item_bias = embedding(n_items, 1) if bias else None
        self.global_bias = nn.Parameter(torch.zeros(1)) if bias else None
        h = list(layers)
        # The first Linear over concat(user part, item part) split in two: W·[u;i] = W_u·u + W_i·i.
        # Same model, but lets raw_all add a [B,1,h] user half to a [1,C,h] item half instead of
        # pushing B*C concatenated rows through the first layer.
        self.time_dim = time_dim
        user_dim, item_dim = user_size + user_side_dim + user_bag + time_dim, item_size + item_side_dim + item_bag
        self.user_in = nn.Linear(user_dim, h[0])
        self.item_in = nn.Linear(item_dim, h[0], bias=False)
        # product: user and item projections [*, product] whose element-wise product enters the first layer
        self.user_proj = nn.Linear(user_dim, product, bias=False) if product > 0 else None
        self.item_proj = nn.Linear(item_dim, product, bias=False) if product > 0 else None
        self.product_in = nn.Linear(product, h[0], bias=False) if product > 0 else None
        body: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for a, b in zip(h[:-1], h[1:]):
            body += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        body.append(nn.Linear(h[-1], 1))
        self.head = nn.Sequential(*body)
        self.y_range = tuple(y_range)
        self.id_dropout = id_dropout
        self.time_dropout = time_dropout

    def _drop_ids(self, idx):
        # Training only: hide some ids (embedding, bias and rating bag alike) so the side features learn to
        # stand in for unseen ones.
        if self.training and self.id_dropout > 0:
            keep = torch.rand(idx.shape, device=idx.device) >= self.id_dropout
            return idx * keep
        return idx

    def user_part(self, users, user_side=None, leave_out=None, ids=None, when=None):
        """(first-layer user half [B, h0], product projection [B, product] or None); leave_out[B]: items whose
        rating the user's bag leaves out; when [B, time_dim]: the pairs' time features (None: zeros).

        ids[B]: the ids the embedding and bag read (users after id dropout; drawn here when None); the side
        features always come from `users`, the real ids."""
        ids = self._drop_ids(users) if ids is None else ids
        parts = [self.user_factors(ids), self.user_side(users, user_side)]  # [B, user_size], [B, du]
        if self.user_ratings is not None:
            parts.append(self.user_ratings(ids, leave_out))                  # [B, user_bag]
        if self.time_dim > 0:
            if when is None:
                when = torch.zeros(len(users), self.time_dim, device=users.device)
            elif self.training:   # hidden: a share of the times, and the time of every hidden user id
                keep = (torch.rand(len(users), device=users.device) >= self.time_dropout) & (ids > 0)
                when = when * keep.unsqueeze(1)                                # [B, time_dim]
            parts.append(when)
        x = torch.cat(parts, -1)
        return self.user_in(x), (self.user_proj(x) if self.user_proj is not None else None)

    def item_part(self, items, item_side=None, leave_out=None, ids=None):
        """(first-layer item half [C, h0], product projection [C, product] or None); leave_out[C]: users whose
        rating the item's bag leaves out (ids: as in user_part)."""
        ids = self._drop_ids(items) if ids is None else ids
        parts = [self.item_factors(ids), self.item_side(items, item_side)]  # [C, item_size], [C, di]
        if self.item_ratings is not None:
            parts.append(self.item_ratings(ids, leave_out))                  # [C, item_bag]
        x = torch.cat(parts, -1)
        return self.item_in(x), (self.item_proj(x) if self.item_proj is not None else None)

    def _first(self, user, item):
        """First-layer sum from (half, projection) parts that broadcast: user [B|B,1, ...] + item [B|1,C, ...]."""
        h = user[0] + item[0]
        if self.product_in is not None:
            h = h + self.product_in(user[1] * item[1])
        return h

    def user_offset(self, users):
        """User bias + global bias [B] added to the MLP's output (zeros without biases)."""
        if self.user_bias is None:
            return torch.zeros(len(users), device=users.device)
        return self.user_bias(users)[:, 0] + self.global_bias

    def item_offset(self, items):
        """Item bias [C] added to the MLP's output (zeros without biases)."""
        if self.item_bias is None:
            return torch.zeros(len(items), device=items.device)
        return self.item_bias(items)[:, 0]

    def raw(self, users, items, user_side=None, item_side=None, when=None):
        """Pre-sigmoid score [B] of pairs users[B], items[B] (when [B, time_dim]: their time features)."""
        uid, iid = self._drop_ids(users), self._drop_ids(items)    # one draw per pair for the MLP and biases
        train = self.training                                      # leave the pair's own rating out of its bags
        h = self._first(self.user_part(users, user_side, items if train else None, uid, when),
                        self.item_part(items, item_side, users if train else None, iid))    # [B, h0]
        return self.head(h)[:, 0] + self.user_offset(uid) + self.item_offset(iid)

    def raw_all(self, users, items, user_side=None, item_side=None, when=None):
        """Pre-sigmoid scores [B, C]: users[B] (when [B, time_dim]) against items[C]; memory B*C*h0 floats."""
        uid, iid = self._drop_ids(users), self._drop_ids(items)
        up, ip = self.user_part(users, user_side, ids=uid, when=when), self.item_part(items, item_side, ids=iid)
        h = self._first([None if t is None else t[:, None, :] for t in up],
                        [None if t is None else t[None] for t in ip])                       # [B, C, h0]
        return self.head(h)[..., 0] + self.user_offset(uid)[:, None] + self.item_offset(iid)[None, :]

    def forward(self, users, items, user_side=None, item_side=None, when=None):
        return sigmoid_range(self.raw(users, items, user_side, item_side, when), *self.y_range)

    def all_items(self):
        """(item_part of every known item (model rows 1..I): halves [I, h0] and projections [I, product] or None,
        item offsets [I]), for score_all."""
        items = torch.arange(1, self.item_factors.num_embeddings, device=self.item_in.weight.device)
        return self.item_part(items), self.item_offset(items)

    def score_all(self, users, all_items, user_side=None, when=None):
        """Pre-sigmoid scores [B, I] of users[B] (when [B, time_dim]) against every known item; work space
        B*I*(h0 + product) floats."""
        item, item_b = all_items                                                            # ([I, h0], [I, p]), [I]
        up = self.user_part(users, user_side, when=when)
        h = self._first([None if t is None else t[:, None, :] for t in up],
                        [None if t is None else t[None] for t in item])                     # [B, I, h0]
        offset = self.user_offset(users)[:, None] + item_b[None]                            # [B, I]
        if isinstance(self.head[0], nn.ReLU):                      # in place: one [B, I, h0] buffer less
            return self.head[1:](h.relu_())[..., 0] + offset
        return self.head(h)[..., 0] + offset

    @property
    def score_width(self) -> int:
        """Floats of work space per score in score_all: the [B, I, h0] first-layer sum (and [B, I, product])."""
        return self.item_in.out_features + (self.product_in.in_features if self.product_in is not None else 0)

    def item_space(self):
        """Item id embeddings [I, item_size] (the MLP's input; similar items use the dot model's instead)."""
        return self.item_factors.weight[1:]
