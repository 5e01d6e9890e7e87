"""Recommender: raw MovieLens ids in and out, the model and its id vocabularies in one object."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from models import features as fx
from models import item_item
from models import config as cfg
from models.collab import DotProductBias, EmbeddingNN, emb_size, sigmoid_range
from models.config import DotConfig, ModelConfig, Mse
from models.scoring import chunk_rows, csr_from_pairs, topk
from models.training_loop import pick_device, train

FORMAT = "lensflow-recommender/4"     # the per-kind config, flat (models.config.flat)
FORMAT_3 = "lensflow-recommender/3"   # the old 26-field ModelConfig (models.config.from_legacy), item-item term
FORMAT_2 = "lensflow-recommender/2"   # no item-item term
FORMAT_1 = "lensflow-recommender/1"   # side tables and maps as model attributes; load() renames its keys
_LEGACY_FORMATS = (FORMAT_3, FORMAT_2, FORMAT_1)
_FORMAT_1_KEYS = {"user_side": "user_side.table", "item_side": "item_side.table",
                  "user_side_in.weight": "user_side.linear.weight", "item_side_in.weight": "item_side.linear.weight"}
_PREDICT_CHUNK = 1 << 18


def _index(vocab: np.ndarray, ids) -> np.ndarray:
    """Model indices of raw ids: position in the sorted vocabulary + 1, or 0 for unknown ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(vocab) == 0:
        return np.zeros(len(ids), np.int64)
    pos = np.clip(np.searchsorted(vocab, ids), 0, len(vocab) - 1)
    return np.where(vocab[pos] == ids, pos + 1, 0)


SPARSE_EMBEDDINGS = ("user_factors", "item_factors", "user_bias", "item_bias")  # per-id tables (train.sparse_grad)
# parameters with one row per model index (row 0 = unknown), by the vocabulary that indexes them (warm start)
USER_ROWS = ("user_factors.weight", "user_bias.weight", "item_ratings.weight.weight")
ITEM_ROWS = ("item_factors.weight", "item_bias.weight", "user_ratings.weight.weight")


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
                            config.user_bag)
    if config.train.sparse_grad:  # same parameters and state dict; only the gradients' layout changes
        for name in SPARSE_EMBEDDINGS:
            if isinstance(emb := getattr(model, name, None), torch.nn.Embedding):
                emb.sparse = True
    return model


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
        them that term (config.item_item) counts co-ratings only.

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
        ui, ii = _index(user_ids, users), _index(item_ids, items)
        counts = {"user": np.bincount(ui, minlength=len(user_ids) + 1),
                  "item": np.bincount(ii, minlength=len(item_ids) + 1)}
        side = _encode_side(config, user_features, item_features, counts)
        du, di = _side_dims(side)
        model = build_model(config, len(user_ids) + 1, len(item_ids) + 1, du, di).to(dev)
        rec = cls(config, model, user_ids, item_ids, side=side, device=dev)
        if init is not None:
            _warm_start(model, init, user_ids, item_ids)
        if getattr(model, "item_ratings", None) is not None:
            model.item_ratings.set_ratings(*_ratings_by_item(ui, ii, ratings, len(item_ids) + 1, dev))
        if getattr(model, "user_ratings", None) is not None:   # the NN's user bag: CSR by user over items
            model.user_ratings.set_ratings(*_ratings_by_item(ii, ui, ratings, len(user_ids) + 1, dev))
        for part, who, vocab in ((model.user_side, "user", user_ids), (model.item_side, "item", item_ids)):
            table = _side_table(side, who, vocab, counts[who])
            if table is not None:
                part.set_table(torch.as_tensor(table))

        def tensors(u, i, r):
            return (torch.as_tensor(_index(user_ids, u), device=dev),
                    torch.as_tensor(_index(item_ids, i), device=dev),
                    # a read-only array (Arrow-backed frames give them) is copied, not shared: torch warns otherwise
                    torch.as_tensor(np.require(r, np.float32, "W"), device=dev))

        valid_t = None
        if valid is not None:
            vu, vi, vr = (np.asarray(a) for a in valid)
            if not rec.rates:  # a ranking loss needs the target among the known items
                keep = _index(item_ids, vi) > 0
                vu, vi, vr = vu[keep], vi[keep], vr[keep]
            valid_t = tensors(vu, vi, vr) if len(vu) else None
        schedule = dataclasses.replace(config.train, epochs=config.train.epochs if epochs is None else epochs,
                                       lr=config.train.lr if lr is None else lr)
        rec.history = train(model, *tensors(users, items, ratings), schedule, config.loss,
                            n_items=len(item_ids) + 1, valid=valid_t, log=log)
        blend = getattr(config, "item_item", None)
        if blend is not None:
            if times is not None and len(times) != len(users):
                raise ValueError(f"times must be as long as users, got {len(times)} and {len(users)}")
            window = blend.window if times is not None else 0     # no times: co-ratings only
            rec.item_term = item_item.fit_part(ui, ii - 1, np.zeros(len(ui)) if times is None else np.asarray(times),
                                               len(item_ids), window, blend.items, l2=blend.l2, device=dev)
        return rec

    # ---- lookups ------------------------------------------------------------------------------
    def known_users(self, users) -> np.ndarray:
        """True where a raw user id has a learnt embedding."""
        return _index(self.user_ids, users) > 0

    def known_items(self, items) -> np.ndarray:
        """True where a raw item id has a learnt embedding."""
        return _index(self.item_ids, items) > 0

    def _side_rows(self, who: str, ids: np.ndarray, idx: np.ndarray, given: dict | None):
        """Side rows [n, d] for raw ids: model table for known ids, else fit-time or given features."""
        if f"{who}_rows" not in self.side and f"{who}_count_z" not in self.side:
            return None
        table = (self.model.user_side if who == "user" else self.model.item_side).table.cpu().numpy()
        rows = table[idx]
        unknown = idx == 0
        if unknown.any() and f"{who}_rows" in self.side:
            for fid, frows in self._feature_sources(who, given):
                found, r = fx.lookup(ids[unknown], fid, frows)
                sub = rows[unknown]
                sub[found, :r.shape[1]] = r[found]   # feature columns first; the count column keeps row 0's
                rows[unknown] = sub
        return torch.as_tensor(rows, device=self.device)

    def _feature_sources(self, who, given):
        # later sources win: fit-time features first, then features passed in this call
        out = [(self.side[f"{who}_feature_ids"], self.side[f"{who}_rows"])]
        if given is not None:
            meta = self.side[f"{who}_meta"]
            out.append(fx.encode_users(given, meta) if who == "user" else fx.encode_items(given, meta))
        return out

    # ---- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users, items, *, user_features=None, item_features=None) -> np.ndarray:
        """Predicted ratings float32 [n] for raw id pairs (unknown ids: see the class docstring).

        Only a rating model (`rates`) predicts ratings; a ranking model's values are squashed ranking scores.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ui, ii = _index(self.user_ids, users), _index(self.item_ids, items)
        us = self._side_rows("user", users, ui, user_features)
        its = self._side_rows("item", items, ii, item_features)
        out = np.empty(len(users), np.float32)
        for s in range(0, len(users), _PREDICT_CHUNK):
            sl = slice(s, s + _PREDICT_CHUNK)
            u = torch.as_tensor(ui[sl], device=self.device)
            i = torch.as_tensor(ii[sl], device=self.device)
            out[sl] = self.model(u, i, None if us is None else us[sl],
                                 None if its is None else its[sl]).float().cpu().numpy()
        return out

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
        ui = _index(self.user_ids, uniq)
        u = torch.as_tensor(ui, device=self.device)
        us = self._side_rows("user", uniq, ui, user_features)
        items = m.all_items()                                            # once, not per chunk
        part = None if self.item_term is None else {k: v.to(self.device) for k, v in self.item_term.items()}

        def score_chunk(a, b):
            s = m.score_all(u[a:b], items, None if us is None else us[a:b])             # [c, I]
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
        cols = _index(self.item_ids, items) - 1
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
        col = _index(self.item_ids, ei) - 1
        keep = (uniq[pos] == eu) & (col >= 0)
        return csr_from_pairs(pos[keep], col[keep], len(uniq))

    def item_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids [I], learnt item vectors float32 [I, d]) for similar-item search (the model's item_space)."""
        with torch.no_grad():
            emb = self.model.item_space()
        return self.item_ids.copy(), emb.detach().float().cpu().numpy()

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path) -> Path:
        """One file (torch.save of plain tensors, lists and dicts; loads with weights_only=True), atomically."""
        path = Path(path)
        # torch.tensor copies: a side array can be read-only (as_tensor would warn, and share it)
        side = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in self.side.items()}
        payload = {
            "format": FORMAT,
            "kind": self.config.kind,
            "config": cfg.flat(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "user_ids": torch.as_tensor(self.user_ids),
            "item_ids": torch.as_tensor(self.item_ids),
            "side": side,
            "history": self.history,
            "item_term": self.item_term,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path, device=None) -> "Recommender":
        """Inverse of save; also reads the files of earlier formats (their flat 26-field config, format-1 keys)."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        fmt = payload.get("format")
        if fmt == FORMAT:
            config = cfg.from_flat(payload["kind"], payload["config"])
        elif fmt in _LEGACY_FORMATS:
            config = cfg.from_legacy(payload["config"])
        else:
            raise ValueError(f"{path}: not a lensflow recommender file (format {fmt!r})")
        side = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in payload["side"].items()}
        user_ids, item_ids = payload["user_ids"].numpy(), payload["item_ids"].numpy()
        model = build_model(config, len(user_ids) + 1, len(item_ids) + 1, *_side_dims(side))
        state = payload["state_dict"]
        if fmt == FORMAT_1:
            state = {_FORMAT_1_KEYS.get(k, k): v for k, v in state.items()}
        for bags in ("item_ratings", "user_ratings"):   # variable-length buffers: install them before loading
            if f"{bags}.members" in state:
                getattr(model, bags).set_ratings(state[f"{bags}.indptr"], state[f"{bags}.members"],
                                                 state[f"{bags}.values"])
        model.load_state_dict(state)
        term = payload.get("item_term") if getattr(config, "item_item", None) is not None else None
        return cls(config, model, user_ids, item_ids, side=side, history=payload["history"], item_term=term,
                   device=device)


def _warm_start(model: torch.nn.Module, init: Recommender, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
    """Copy init's parameters into model: per-id rows by raw id (ids init never saw keep their fresh
    rows), every other parameter as it is. Buffers (side tables, rating columns) come from the new data."""
    kind = "dot_bias" if isinstance(model, DotProductBias) else "embedding_nn"
    if init.config.kind != kind:
        raise ValueError(f"warm start needs a {kind} model to start from, got a {init.config.kind} one")
    old = dict(init.model.named_parameters())
    moves = {}
    for names, vocab, old_vocab in ((USER_ROWS, user_ids, init.user_ids), (ITEM_ROWS, item_ids, init.item_ids)):
        new_rows = _index(vocab, old_vocab)                       # [len(old_vocab)] row here, 0 = id gone
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


def _ratings_by_item(ui: np.ndarray, ii: np.ndarray, ratings: np.ndarray, n_items: int, device):
    """CSR by item of the training ratings (indptr, users sorted within an item, ratings - mean), as tensors."""
    order = np.lexsort((ui, ii))
    indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(ii, minlength=n_items), out=indptr[1:])
    centred = (ratings - ratings.mean()).astype(np.float32)
    return (torch.as_tensor(indptr, device=device), torch.as_tensor(ui[order], device=device),
            torch.as_tensor(centred[order], device=device))


def _encode_side(config: ModelConfig, user_features, item_features, counts: dict) -> dict:
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


def _side_dims(side: dict) -> tuple[int, int]:
    """Widths of the user and item side tables: feature columns, plus the count column."""
    return tuple((side[f"{who}_rows"].shape[1] if f"{who}_rows" in side else 0) + (f"{who}_count_z" in side)
                 for who in ("user", "item"))


def _side_table(side: dict, who: str, vocab: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Side table by model index [len(vocab) + 1, width]; row 0 (unknown) gets the mean features, lowest count."""
    parts = []
    if f"{who}_rows" in side:
        parts.append(fx.table_by_index(vocab, side[f"{who}_feature_ids"], side[f"{who}_rows"]))
    if f"{who}_count_z" in side:
        low, mean, std = side[f"{who}_count_z"]
        logc = np.maximum(np.log1p(counts.astype(np.float64)), low)   # unknown: as the least-rated known id
        parts.append(((logc - mean) / std).astype(np.float32)[:, None])
    return np.concatenate(parts, 1) if parts else None
