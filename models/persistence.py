"""Recommender files: one torch.save file per model (format 4: the per-kind config in its flat form), written
atomically; earlier formats (1-3, the old 26-field config) still load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from models import config as cfg
from models.build import build_model
from models.config import DOT, NN, ModelConfig, Mse, Softmax, all_keys, from_flat
from models.side_encoding import side_dims

FORMAT = "lensflow-recommender/4"     # the per-kind config, flat (models.config.flat)
FORMAT_3 = "lensflow-recommender/3"   # the old 26-field ModelConfig (models.config.from_legacy), item-item term
FORMAT_2 = "lensflow-recommender/2"   # no item-item term
FORMAT_1 = "lensflow-recommender/1"   # side tables and maps as model attributes; load() renames its keys
LEGACY_FORMATS = (FORMAT_3, FORMAT_2, FORMAT_1)
FORMAT_1_KEYS = {"user_side": "user_side.table", "item_side": "item_side.table",
                  "user_side_in.weight": "user_side.linear.weight", "item_side_in.weight": "item_side.linear.weight"}


def save(rec, path) -> Path:
    """Write a Recommender to one file (torch.save of plain tensors, lists and dicts; loads with weights_only=True), atomically."""
    path = Path(path)
    # torch.tensor copies: a side array can be read-only (as_tensor would warn, and share it)
    side = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in rec.side.items()}
    payload = {
        "format": FORMAT,
        "kind": rec.config.kind,
        "config": cfg.flat(rec.config),
        "state_dict": {k: v.detach().cpu() for k, v in rec.model.state_dict().items()},
        "user_ids": torch.as_tensor(rec.user_ids),
        "item_ids": torch.as_tensor(rec.item_ids),
        "side": side,
        "history": rec.history,
        "item_term": rec.item_term,
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


def read(path) -> dict:
    """The parts of a saved Recommender (its constructor's arguments, the model built and loaded): the inverse of
    save; also reads the files of earlier formats (their flat 26-field config, format-1 keys)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    fmt = payload.get("format")
    if fmt == FORMAT:
        config = from_flat(payload["kind"], payload["config"])
    elif fmt in LEGACY_FORMATS:
        config = from_legacy(payload["config"])
    else:
        raise ValueError(f"{path}: not a lensflow recommender file (format {fmt!r})")
    side = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in payload["side"].items()}
    user_ids, item_ids = payload["user_ids"].numpy(), payload["item_ids"].numpy()
    model = build_model(config, len(user_ids) + 1, len(item_ids) + 1, *side_dims(side))
    state = payload["state_dict"]
    if fmt == FORMAT_1:
        state = {FORMAT_1_KEYS.get(k, k): v for k, v in state.items()}
    for bags in ("item_ratings", "user_ratings"):   # variable-length buffers: install them before loading
        if f"{bags}.members" in state:
            getattr(model, bags).set_ratings(state[f"{bags}.indptr"], state[f"{bags}.members"],
                                             state[f"{bags}.values"])
    model.load_state_dict(state)
    term = payload.get("item_term") if getattr(config, "item_item", None) is not None else None
    return dict(config=config, model=model, user_ids=user_ids, item_ids=item_ids, side=side,
                history=payload["history"], item_term=term)


# Files saved before the per-kind configs held one flat dict of every field of both kinds.
_LEGACY_ONLY = ("kind", "extra", "eval_users", "serving_epochs", "rating_weight")
_LEGACY_ITEM_ITEM_L2 = 200.0   # the item-item term's λ in files saved before item_item_l2 existed


def from_legacy(d: dict) -> ModelConfig:
    """The config of a model file saved with the old 26-field ModelConfig (formats 1-3): the fields its kind,
    loss and blend used; the rest (eval/serving settings, free notes, switches it ignored) dropped."""
    kind, loss = d.get("kind", DOT), d.get("loss", Mse.name)
    if kind == NN and loss != Mse.name:
        raise ValueError(f"an {NN} fitted with loss {loss!r} cannot be loaded: the embedding NN is a rating model now")
    if d.get("rating_weight"):
        raise ValueError("a model fitted with rating_weight > 0 cannot be loaded: that option was removed")
    allowed = set(all_keys(kind))
    if kind == DOT and loss == Mse.name or not d.get("item_item_weight"):
        allowed -= {k for k in allowed if k.startswith("item_item_")}
    if kind == DOT:
        allowed -= set(cfg.keys_of(Softmax) if loss == Mse.name else cfg.keys_of(Mse)) | ({"rating_input"} if loss != Mse.name else set())
    values = {k: v for k, v in d.items() if k in allowed and k not in _LEGACY_ONLY}
    if kind == DOT:
        values["loss"] = loss
        if "item_item_weight" in values:
            values.setdefault("item_item_l2", _LEGACY_ITEM_ITEM_L2)
    return from_flat(kind, values)
