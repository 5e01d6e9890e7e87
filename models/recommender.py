"""Recommender: raw MovieLens ids in and out, the model and its id vocabularies in one object: fit, scoring and
the lookups. Building the module is models/build.py, files models/persistence.py, warm starts
models/warm_start.py, side features models/side_encoding.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from models import item_item
from models import persistence
from models import time_features as tf
from models.bags import ratings_by_item
from models.build import build_model
from models.collab import sigmoid_range
from models.config import ModelConfig, Mse
from models.side_encoding import encode_side, has_side_rows, side_dims, side_rows, side_table
from models.vocabulary import index
from models.warm_start import warm_start
from models.scoring import chunk_rows, csr_from_pairs, topk
from models.training_loop import pick_device, train

_PREDICT_CHUNK = 1 << 18


class Recommender:
    """A trained model with its id vocabularies and side-feature tables.

    Unknown ids: model index 0, whose embeddings and biases are fixed at zero. For dot_bias without
    side info an unknown user scores sigmoid_range(global bias + item bias) (a popularity-like
    fallback), an unknown item sigmoid_range(global bias + user bias). With side info (either kind)
    an unknown id is scored from its side features (given at fit, or passed to predict/recommend),
    else from the mean feature row, and its rating count is taken as the lowest count seen in training.
    """

    def __init__(self, config: ModelConfig, model: torch.nn.Module, user_ids: np.ndarray,
                 item_ids: np.ndarray, *, side: dict | None = None, history: list | None = None,
                 item_term: dict | None = None, device=None):
        self.config = config
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.user_ids = np.asarray(user_ids, dtype=np.int64)   # sorted; model index = position + 1
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.side = side or {}   # user_meta/item_meta + encoded feature rows by raw id
        self.history = history or []
        self.item_term = item_term   # models.item_item.fit_part over model columns, or None

    @property
    def rates(self) -> bool:
        """True when the model predicts ratings (loss mse); a ranking model's scores only order items."""
        return isinstance(self.config.loss, Mse)

    # ---- training -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, users, items, ratings, config: ModelConfig, *, valid=None, user_features=None,
            item_features=None, device=None, log=None, init: "Recommender | None" = None,
            epochs: int | None = None, lr: float | None = None, times=None) -> "Recommender":
        """Train on raw ids; valid = (users, items, ratings) arrays for per-epoch validation loss.

        times: each rating's time (sortable numbers) for the item-item term's time-adjacent pairs; without
        them that term (config.item_item) counts co-ratings only. The NN with time_features needs them, in unix
        seconds (valid may then carry its ratings' times as a 4th array; without them it is scored as untimed).

        init: a fitted Recommender of the same config to start from (its rows by id, other weights as
        they are); epochs, lr: the schedule's epoch count and peak rate instead of config's (the model
        keeps config as it is).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float32)
        if not (len(users) == len(items) == len(ratings)) or len(users) == 0:
            raise ValueError(f"users, items, ratings must be non-empty and equally long, got "
                             f"{len(users)}, {len(items)}, {len(ratings)}")
        if not np.isfinite(ratings).all():
            raise ValueError("ratings must be finite")
        dev = pick_device(device)
        torch.manual_seed(config.train.seed)
        user_ids, item_ids = np.unique(users), np.unique(items)
        ui, ii = index(user_ids, users), index(item_ids, items)
        counts = {"user": np.bincount(ui, minlength=len(user_ids) + 1),
                  "item": np.bincount(ii, minlength=len(item_ids) + 1)}
        side = encode_side(config, user_features, item_features, counts)
        timed = getattr(config, "time_features", False)
        if timed:
            if times is None:
                raise ValueError("time_features needs each training rating's time: pass times (unix seconds)")
            values = tf.residuals(ii, ratings)
            side.update(tf.fit_times(ui, times, len(user_ids) + 1, values))
        du, di = side_dims(side)
        model = build_model(config, len(user_ids) + 1, len(item_ids) + 1, du, di).to(dev)
        rec = cls(config, model, user_ids, item_ids, side=side, device=dev)
        if init is not None:
            warm_start(model, init, user_ids, item_ids)
        if getattr(model, "item_ratings", None) is not None:
            model.item_ratings.set_ratings(*ratings_by_item(ui, ii, ratings, len(item_ids) + 1, dev))
        if getattr(model, "user_ratings", None) is not None:   # the NN's user bag: CSR by user over items, raw stars
            model.user_ratings.set_ratings(*ratings_by_item(ii, ui, ratings, len(user_ids) + 1, dev, offset=0.0))
        for part, who, vocab in ((model.user_side, "user", user_ids), (model.item_side, "item", item_ids)):
            table = side_table(side, who, vocab, counts[who])
            if table is not None:
                part.set_table(torch.as_tensor(table))

        def tensors(u, i, r):
            return (torch.as_tensor(index(user_ids, u), device=dev),
                    torch.as_tensor(index(item_ids, i), device=dev),
                    # a read-only array (Arrow-backed frames give them) is copied, not shared: torch warns otherwise
                    torch.as_tensor(np.require(r, np.float32, "W"), device=dev))

        valid_t = None
        if valid is not None:
            vu, vi, vr = (np.asarray(a) for a in valid[:3])
            vt = np.asarray(valid[3]) if len(valid) > 3 and valid[3] is not None else None
            if not rec.rates:  # a ranking loss needs the target among the known items
                keep = index(item_ids, vi) > 0
                vu, vi, vr = vu[keep], vi[keep], vr[keep]
            valid_t = tensors(vu, vi, vr) if len(vu) else None
            if timed and valid_t is not None:
                vw = np.zeros((len(vu), tf.WIDTH), np.float32) if vt is None else \
                    tf.pair_features(side, index(user_ids, vu), vt)
                valid_t = (*valid_t, torch.as_tensor(vw, device=dev))
        when = None
        if timed:   # each training rating's time features, itself left out of its user's history
            when = torch.as_tensor(tf.pair_features(side, ui, times, own=values), device=dev)
        schedule = dataclasses.replace(config.train, epochs=config.train.epochs if epochs is None else epochs,
                                       lr=config.train.lr if lr is None else lr)
        rec.history = train(model, *tensors(users, items, ratings), schedule, config.loss,
                            n_items=len(item_ids) + 1, valid=valid_t, log=log, when=when)
        blend = getattr(config, "item_item", None)
        if blend is not None:
            if times is not None and len(times) != len(users):
                raise ValueError(f"times must be as long as users, got {len(times)} and {len(users)}")
            window = blend.window if times is not None else 0     # no times: co-ratings only
            rec.item_term = item_item.fit_part(ui, ii - 1, np.zeros(len(ui)) if times is None else np.asarray(times),
                                               len(item_ids), window, blend.items, l2=blend.l2, device=dev)
        return rec

    # ---- persistence (models/persistence.py) --------------------------------------------------
    def save(self, path) -> Path:
        """One file (torch.save of plain tensors, lists and dicts; loads with weights_only=True), atomically."""
        return persistence.save(self, path)

    @classmethod
    def load(cls, path, device=None) -> "Recommender":
        """Inverse of save; also reads the files of earlier formats (models/persistence.py)."""
        return cls(**persistence.read(path), device=device)

    # ---- lookups ------------------------------------------------------------------------------
    def known_users(self, users) -> np.ndarray:
        """True where a raw user id has a learnt embedding."""
        return index(self.user_ids, users) > 0

    def known_items(self, items) -> np.ndarray:
        """True where a raw item id has a learnt embedding."""
        return index(self.item_ids, items) > 0

    def _side_rows(self, who: str, ids: np.ndarray, idx: np.ndarray, given: dict | None):
        """Side rows [n, d] for raw ids (models/side_encoding.py side_rows), on the model's device, or None."""
        if not has_side_rows(self.side, who):
            return None
        part = self.model.user_side if who == "user" else self.model.item_side
        return torch.as_tensor(side_rows(self.side, who, part.table.cpu().numpy(), ids, idx, given), device=self.device)

    # ---- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users, items, *, user_features=None, item_features=None, times=None) -> np.ndarray:
        """Predicted ratings float32 [n] for raw id pairs (unknown ids: see the class docstring).

        Only a rating model (`rates`) predicts ratings; a ranking model's values are squashed ranking scores.
        times: the ratings' unix seconds [n] for a model with time_features (None: the time unknown, as when
        serving; other models ignore them).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ui, ii = index(self.user_ids, users), index(self.item_ids, items)
        us = self._side_rows("user", users, ui, user_features)
        its = self._side_rows("item", items, ii, item_features)
        when = self._when(ui, times)
        out = np.empty(len(users), np.float32)
        for s in range(0, len(users), _PREDICT_CHUNK):
            sl = slice(s, s + _PREDICT_CHUNK)
            u = torch.as_tensor(ui[sl], device=self.device)
            i = torch.as_tensor(ii[sl], device=self.device)
            extra = {} if when is None else {"when": when[sl]}
            out[sl] = self.model(u, i, None if us is None else us[sl],
                                 None if its is None else its[sl], **extra).float().cpu().numpy()
        return out

    def _when(self, ui: np.ndarray, times=None):
        """Time features [n, T] of model user indices ui at times, or None: a model without them, or no times (the
        time unknown: the model reads zeros, as it learnt to for time_dropout of its training ratings)."""
        if not getattr(self.config, "time_features", False) or times is None:
            return None
        if len(times) != len(ui):
            raise ValueError(f"times must be one per pair, got {len(times)} for {len(ui)} pairs")
        return torch.as_tensor(tf.pair_features(self.side, ui, times), device=self.device)

    @torch.no_grad()
    def recommend(self, users, k: int, exclude=None, *, user_features=None,
                  chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k known items per user: (item_ids int64 [n, k], scores float32 [n, k]), best first.

        exclude = (users, items) raw-id pairs never to recommend (e.g. the training ratings).
        Scores are predicted ratings for a rating model and raw ranking logits for a ranking one (for
        dot_bias with the item bias weighted 1 + popularity_boost). With the item-item blend
        (config.item_item) they are z(logits) + weight × z(term), the term scored from each user's `exclude`
        items (their rated items), both standardised over the items they have not rated.
        A user with fewer than k allowed items gets item id -1 and score -inf in the tail.
        """
        users = np.asarray(users, dtype=np.int64)
        uniq, inverse = np.unique(users, return_inverse=True)
        csr = self._history_csr(uniq, exclude)
        score_chunk, width = self._score_chunks(uniq, csr, user_features)
        n_items = len(self.item_ids)
        cols, raw = topk(score_chunk, len(uniq), n_items, k, exclude=csr,
                         chunk_size=chunk_size or chunk_rows(n_items, width=width), device=self.device)
        scores = self._as_scores(raw)
        pad = np.isneginf(raw)                                           # fewer than k allowed items
        ids = np.where(pad, -1, self.item_ids[cols])
        scores = np.where(pad, -np.inf, scores)                          # sigmoid_range(-inf) would be 0
        return ids[inverse], scores.astype(np.float32)[inverse]

    def _as_scores(self, raw: np.ndarray) -> np.ndarray:
        """recommend()'s scale from pre-sigmoid scores: ratings for a rating model, else as they are."""
        return sigmoid_range(torch.as_tensor(raw), *self.config.loss.y_range).numpy() if self.rates else raw

    def _score_chunks(self, uniq: np.ndarray, csr, user_features=None):
        """(score_chunk(a, b) -> pre-sigmoid scores [c, I] of users uniq[a:b] against every known item, work-space
        width per score). With the item-item blend, each row is blended with the term of its history (csr)."""
        m = self.model
        ui = index(self.user_ids, uniq)
        u = torch.as_tensor(ui, device=self.device)
        us = self._side_rows("user", uniq, ui, user_features)
        when = self._when(ui)                                            # lists are for now: the time unknown
        items = m.all_items()                                            # once, not per chunk
        part = None if self.item_term is None else {k: v.to(self.device) for k, v in self.item_term.items()}

        def score_chunk(a, b):
            extra = {} if when is None else {"when": when[a:b]}
            s = m.score_all(u[a:b], items, None if us is None else us[a:b], **extra)    # [c, I]
            if part is None:
                return s
            history = torch.zeros_like(s)
            if csr is not None:
                lo, hi = int(csr[0][a]), int(csr[0][b])
                rows = np.repeat(np.arange(b - a), np.diff(csr[0][a:b + 1]))
                history[torch.as_tensor(rows, device=s.device), torch.as_tensor(csr[1][lo:hi], device=s.device)] = 1.0
            return item_item.blend(s, history, part, self.config.item_item.weight)

        return score_chunk, (6 if part is not None else m.score_width)   # the blend holds ~6 [c, I] buffers

    @torch.no_grad()
    def scores(self, users, items, chunk_size: int | None = None, exclude=None) -> np.ndarray:
        """Scores float32 [len(users), len(items)] on recommend()'s scale, for items the model knows; with the
        item-item blend, pass recommend()'s `exclude` too (the users' rated items, which the term scores from)."""
        users = np.asarray(users, dtype=np.int64)
        cols = index(self.item_ids, items) - 1
        if (cols < 0).any():
            raise ValueError("scores() takes items the model knows (known_items)")
        uniq, inverse = np.unique(users, return_inverse=True)
        score_chunk, width = self._score_chunks(uniq, self._history_csr(uniq, exclude))
        out = np.empty((len(uniq), len(cols)), np.float32)
        chunk = chunk_size or chunk_rows(len(self.item_ids), width=width)
        for a in range(0, len(uniq), chunk):
            b = min(len(uniq), a + chunk)
            out[a:b] = self._as_scores(score_chunk(a, b)[:, cols].float().cpu().numpy())
        return out[inverse]

    def _history_csr(self, uniq: np.ndarray, exclude):
        """(indptr, indices) over the sorted distinct users `uniq`: the model columns of their `exclude` items."""
        if exclude is None:
            return None
        eu, ei = (np.asarray(a, dtype=np.int64) for a in exclude)
        pos = np.clip(np.searchsorted(uniq, eu), 0, len(uniq) - 1)
        col = index(self.item_ids, ei) - 1
        keep = (uniq[pos] == eu) & (col >= 0)
        return csr_from_pairs(pos[keep], col[keep], len(uniq))

    def item_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids [I], learnt item vectors float32 [I, d]) for similar-item search (the model's item_space)."""
        with torch.no_grad():
            emb = self.model.item_space()
        return self.item_ids.copy(), emb.detach().float().cpu().numpy()

