"""Model configuration: one config per model kind, each field one that kind uses.

A config is a small tree: the kind's own fields, a shared `TrainConfig` (how the fit runs), a loss (`Mse` or
`Softmax`, each with its own settings) and, for the ranking model, an optional `ItemItem` blend. Its flat form
(`flat`, `from_flat`) is what `--dot-config` / `--nn-config` JSON, MLflow params and model files use: a key
belongs to one block, so a key that does not apply to a kind, its loss or its blend is refused by name.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import ClassVar

DOT, NN = "dot_bias", "embedding_nn"   # same spelling as tasks.core.contract.MODEL_KINDS
KINDS = (DOT, NN)
INF = float("inf")


def _whole(low: int):
    return lambda v: float(v).is_integer() and v >= low


# The values each numeric field may take, by flat key: (test, the rule as the error states it).
_RANGES = {
    "n_factors": (_whole(0), "a whole number >= 0 (0: the NN's size rule)"),
    "epochs": (_whole(1), "a whole number >= 1"),
    "batch_size": (_whole(1), "a whole number >= 1"),
    "seed": (_whole(0), "a whole number >= 0"),
    "n_negatives": (_whole(0), "a whole number >= 0 (0: full softmax)"),
    "lr": (lambda v: 0 < v < INF, "a number > 0"),
    "wd": (lambda v: 0 <= v < INF, "a number >= 0"),
    "l2": (lambda v: 0 <= v < INF, "a number >= 0"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "id_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "user_bag": (_whole(0), "a whole number >= 0 (0: none)"),
    "item_bag": (_whole(0), "a whole number >= 0 (0: none)"),
    "popularity_boost": (lambda v: -1 <= v < INF, "a number >= -1 (-1: item bias left out)"),
    "item_item_weight": (lambda v: 0 < v < INF, "a number > 0 (0 turns the item-item blend off)"),
    "item_item_window": (_whole(0), "a whole number >= 0 (0: co-ratings only)"),
    "item_item_items": (_whole(1), "a whole number >= 1"),
    "item_item_l2": (lambda v: 0 < v < INF, "a number > 0"),
}


def _check(obj, prefix: str = "") -> None:
    """Refuse a value no fit can use here, not as torch's error mid-training; whole numbers become ints."""
    for f in dataclasses.fields(obj):
        key, value = prefix + f.name, getattr(obj, f.name)
        if f.type in ("bool",) and not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        if key not in _RANGES:
            continue
        ok, rule = _RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"{key} must be {rule}, got {value!r}")
        if f.type == "int":
            object.__setattr__(obj, f.name, int(value))


@dataclass(frozen=True)
class TrainConfig:
    """How one fit runs, for every kind: AdamW with a one-cycle schedule over shuffled batches."""

    epochs: int = 5
    lr: float = 5e-3                  # peak learning rate of the one-cycle schedule
    wd: float = 0.1                   # AdamW (decoupled) weight decay
    l2: float = 0.0                   # L2 penalty on the id embedding rows used in each batch (classic MF)
    batch_size: int = 1024
    seed: int = 42
    sparse_grad: bool = False         # id embeddings: sparse gradients + SparseAdam (lazy Adam, no wd), so a
                                      # step costs the batch's rows, not the whole tables (large catalogues)

    def __post_init__(self):
        _check(self)


@dataclass(frozen=True)
class Mse:
    """Squared error on the stars; predictions are squashed into y_range (fastai's sigmoid_range)."""

    name: ClassVar[str] = "mse"
    y_range: tuple[float, float] = (0.0, 5.5)

    def __post_init__(self):
        low, high = (float(x) for x in self.y_range)
        if not low < high:
            raise ValueError(f"y_range must be [low, high] with low < high, got {list(self.y_range)}")
        object.__setattr__(self, "y_range", (low, high))


@dataclass(frozen=True)
class Softmax:
    """Cross-entropy of the rated item against every item (n_negatives 0) or shared sampled negatives."""

    name: ClassVar[str] = "softmax"
    n_negatives: int = 0

    def __post_init__(self):
        _check(self)


LOSSES = {Mse.name: Mse, Softmax.name: Softmax}


@dataclass(frozen=True)
class ItemItem:
    """The ranking model's lists blend z(dot) + weight × z(item-item term) per user (models/item_item.py)."""

    weight: float = 0.1
    window: int = 3                   # also count pairs rated within this many positions in time
    items: int = 5_000                # over this many most-rated items (its inverse costs items³)
    l2: float = 400.0                 # λ added to its Gram matrix's diagonal

    def __post_init__(self):
        _check(self, "item_item_")


@dataclass(frozen=True)
class DotConfig:
    """Dot product with biases: the ranking model (softmax), or a rating model (mse)."""

    kind: ClassVar[str] = DOT
    n_factors: int = 256
    use_side_info: bool = True        # user age/gender/occupation, item genres/year/decade, rating counts
    rating_input: bool = False        # mse only: item vectors also encode the item's column of training ratings
    popularity_boost: float = 0.25    # lists rank with the item bias weighted 1 + this
    loss: Mse | Softmax = field(default_factory=Softmax)
    item_item: ItemItem | None = None  # softmax only: blend the lists with an item-item term
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        _check(self)
        if self.rating_input and not isinstance(self.loss, Mse):
            raise ValueError("rating_input applies to loss 'mse' only (a ranking loss would score each item "
                             "with its own ratings in the input)")
        if self.item_item is not None and not isinstance(self.loss, Softmax):
            raise ValueError("item_item_* applies to loss 'softmax' only (the blend ranks; it is no rating)")


@dataclass(frozen=True)
class NNConfig:
    """Concatenated user and item embeddings through an MLP: the rating model (squared error on the stars)."""

    kind: ClassVar[str] = NN
    n_factors: int = 0                # embedding width; 0 = fastai's size rule per vocabulary
    layers: tuple[int, ...] = (100,)  # hidden layer widths
    dropout: float = 0.1              # after each hidden layer
    id_dropout: float = 0.0           # share of ids replaced by "unknown" while training, so side info learns cold start
    use_side_info: bool = True
    biases: bool = False              # learnt user, item and global biases added to the MLP's output
    user_bag: int = 0                 # width of the code of the user's training ratings (a learnt row per item) in
                                      # the MLP's input; 0 = none (models/collab.py EmbeddingNN)
    item_bag: int = 0                 # the same for the item's column of training ratings (a learnt row per user)
    loss: Mse = field(default_factory=Mse)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        _check(self)
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else ()
        if not layers or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in layers):
            raise ValueError(f"layers must be one or more widths >= 1, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        if not isinstance(self.loss, Mse):
            raise ValueError("the embedding NN is the rating model: its loss is 'mse'")


ModelConfig = DotConfig | NNConfig
CONFIGS = {DOT: DotConfig, NN: NNConfig}
_BLOCKS = {"train": ("", TrainConfig), "item_item": ("item_item_", ItemItem)}   # block -> (flat prefix, type)


# ---- the flat form ------------------------------------------------------------------------------------------
def flat(config: ModelConfig) -> dict:
    """{key: value} of every setting the config has (lists, not tuples): JSON, MLflow params, model files."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "loss":
            if config.kind == DOT:
                out["loss"] = value.name
            out.update(_plain(value))
        elif f.name in _BLOCKS:
            if value is not None:
                out.update({_BLOCKS[f.name][0] + k: v for k, v in _plain(value).items()})
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _plain(block) -> dict:
    return {f.name: (list(v) if isinstance(v := getattr(block, f.name), tuple) else v)
            for f in dataclasses.fields(block)}


def _keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def all_keys(kind: str) -> list[str]:
    """Every key a config of this kind may have, whatever its loss or blend."""
    keys = [k for k in _keys(CONFIGS[kind]) if k not in ("loss", "train", "item_item")] + _keys(TrainConfig)
    if kind == DOT:
        keys += ["loss", *_keys(Softmax), *("item_item_" + k for k in _keys(ItemItem))]
    keys += _keys(Mse)
    return sorted(set(keys))


def from_flat(kind: str, values: dict) -> ModelConfig:
    """The config of `kind` from its flat form; a key it does not use is refused, saying why."""
    if kind not in CONFIGS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    rest = dict(values)
    loss_name = rest.pop("loss", Softmax.name if kind == DOT else Mse.name)
    if kind == NN and loss_name != Mse.name:
        raise ValueError(f"'loss' does not apply to {NN}: the rating model's loss is always 'mse'")
    if loss_name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss_name!r}")
    take = lambda cls, prefix="": {k: rest.pop(prefix + k) for k in _keys(cls) if prefix + k in rest}  # noqa: E731
    parts = {"train": TrainConfig(**take(TrainConfig)), "loss": LOSSES[loss_name](**take(LOSSES[loss_name]))}
    if kind == DOT:
        block = take(ItemItem, "item_item_")
        if block and loss_name == Softmax.name:
            if "weight" not in block:
                raise ValueError("item_item_* settings need item_item_weight > 0 (the blend is off without it)")
            parts["item_item"] = ItemItem(**block)
        elif block:
            rest.update({"item_item_" + k: v for k, v in block.items()})
    own = take(CONFIGS[kind])
    for key in own.keys() & {"loss", "train", "item_item"}:
        rest[key] = own.pop(key)
    if rest:
        reasons = [_why_not(kind, loss_name, key) for key in sorted(rest)]
        if any(r.startswith("unknown") for r in reasons):
            reasons.append(f"{kind} settings are {', '.join(all_keys(kind))}")
        raise ValueError("; ".join(reasons))
    return CONFIGS[kind](**own, **parts)


def _why_not(kind: str, loss: str, key: str) -> str:
    """Why `key` cannot be set on a `kind` config with `loss`."""
    if key in all_keys(kind):
        if key.startswith("item_item_") or key in _keys(Softmax):
            return f"'{key}' applies to loss 'softmax' only (this {kind} config's loss is '{loss}')"
        return f"'{key}' applies to loss 'mse' only (this {kind} config's loss is '{loss}')"
    other = [k for k in KINDS if k != kind and key in all_keys(k)]
    if other:
        return f"'{key}' does not apply to {kind} (it is a setting of {other[0]})"
    near = difflib.get_close_matches(key, all_keys(kind), 1)
    return f"unknown setting '{key}'" + (f" (did you mean '{near[0]}'?)" if near else "")


def for_kind(kind: str, **overrides) -> ModelConfig:
    """The tuned recipe of a kind (and of a loss, if `loss` is given), then flat overrides on top of it.

    item_item_weight 0 turns the blend off; a positive weight on a recipe without one adds ItemItem's defaults.
    """
    if kind not in CONFIGS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    loss = overrides.get("loss")
    base = RECIPES.get((kind, loss), DEFAULTS[kind]) if loss else DEFAULTS[kind]
    values = flat(base)
    weight = overrides.get("item_item_weight")
    if weight is not None and not isinstance(weight, bool) and weight == 0:
        overrides = {k: v for k, v in overrides.items() if k != "item_item_weight"}
        values = {k: v for k, v in values.items() if not k.startswith("item_item_")}
        stray = sorted(k for k in overrides if k.startswith("item_item_"))
        if stray:
            raise ValueError(f"{', '.join(stray)}: item_item_* settings need item_item_weight > 0")
    elif weight is not None and "item_item_weight" not in values and values.get("loss") == Softmax.name:
        values.update({"item_item_" + k: v for k, v in _plain(ItemItem()).items()})
    return from_flat(kind, {**values, **overrides})


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
        allowed -= set(_keys(Softmax) if loss == Mse.name else _keys(Mse)) | ({"rating_input"} if loss != Mse.name else set())
    values = {k: v for k, v in d.items() if k in allowed and k not in _LEGACY_ONLY}
    if kind == DOT:
        values["loss"] = loss
        if "item_item_weight" in values:
            values.setdefault("item_item_l2", _LEGACY_ITEM_ITEM_L2)
    return from_flat(kind, values)


# ---- the recipes --------------------------------------------------------------------------------------------
# The ranking model (the pipeline's dot_bias): side features, full softmax, blended with a time-aware EDLAE
# item-item term (window 3, λ 400, weight 0.1). popularity_boost 0.25 keeps 99.8 % of boost 1's NDCG@10 with
# 28 % more coverage (bench/results/popularity_boost.md). Side features alone lower the dot model's NDCG@10
# (0.986 against 1.014 x EASE on five random tuning holdouts) but make it add more to the term: 1.056 against
# 1.042 in the blend, the temporal tuning cutoffs unchanged (1.062; three training seeds). Report holdouts:
# 1.058 x EASE, the 0.80 cutoff 1.058 (bench/results/published_quality.md).
RANKING = DotConfig(n_factors=256, use_side_info=True, popularity_boost=0.25, loss=Softmax(n_negatives=0),
                    item_item=ItemItem(weight=0.1, window=3, items=5_000, l2=400.0),
                    train=TrainConfig(epochs=6, lr=1e-2, wd=0.0, l2=0.03, batch_size=1024))

# The dot model as a rating model (bench/results/models.md): side info + the item's rating column, 64 factors,
# wd 0.3, l2 0.005, 6 epochs, batch 512: RMSE 0.8817 on the random 80/20 tuning splits 1 and 2.
DOT_RATING = DotConfig(n_factors=64, use_side_info=True, rating_input=True, popularity_boost=0.0, loss=Mse(),
                       train=TrainConfig(epochs=6, lr=3e-3, wd=0.3, l2=0.005, batch_size=512))

# The rating model (the pipeline's embedding_nn; bench/bench_rating.py, bench/results/rating.md; per-user random
# 80/20 holdouts, mean RMSE over tuning split seeds 1-3): learnt user/item/global biases added to the MLP's output
# 0.9019 -> 0.9007; plus a code of the user's training ratings in the MLP's input (user_bag) 32: 0.8954, 64: 0.8950,
# 128: 0.8935, 256: 0.8932. The item's rating column as input made it worse (0.8988 with both bags at 32).
RATING = NNConfig(n_factors=0, layers=(400,), dropout=0.1, use_side_info=True, biases=True, user_bag=128,
                  train=TrainConfig(epochs=5, lr=3e-3, wd=0.1, batch_size=256))

DEFAULTS: dict[str, ModelConfig] = {DOT: RANKING, NN: RATING}
RECIPES: dict[tuple[str, str], ModelConfig] = {(DOT, Softmax.name): RANKING, (DOT, Mse.name): DOT_RATING,
                                               (NN, Mse.name): RATING}

# Cheaper rating recipes: less accurate, 3-9x faster (bench/results/models.md), as flat overrides of for_kind.
FAST_RATING: dict[str, dict] = {
    DOT: dict(loss="mse", epochs=5, lr=5e-3, batch_size=1024, rating_input=False),
    NN: dict(layers=[100], lr=5e-3, batch_size=1024, biases=False, user_bag=0),   # as measured before those parts
}

# Explicit settings for an ML-25M-size catalogue (162k users x 59k items) on a 2-core CPU, passed as
# `lensflow run --dot-config JSON --nn-config JSON` (bench/bench_scale.py, bench/results/scale.md): the
# ranking model with shared sampled negatives instead of a full softmax over the catalogue, narrow
# embeddings with sparse gradients (a step updates the batch's rows, not the 162k x 64 tables), large
# batches, few epochs. eval_users and serving_epochs are the pipeline's per-kind settings (tasks/learning/training.py
# `KindSettings`): ranking metrics on a fixed sample of users, and the serving fit continuing the split fit
# for one epoch (test NDCG@10 0.128 against the split fit's 0.118 at 25M, for half a refit's steps).
LARGE_CATALOGUE: dict[str, dict] = {
    DOT: dict(loss="softmax", n_factors=64, n_negatives=256, epochs=2, lr=2e-2, wd=0.0, l2=0.03,
              batch_size=8192, popularity_boost=0.25, sparse_grad=True, eval_users=3_000, serving_epochs=1,
              item_item_weight=0,     # its co-rating count over 162k users costs more than a 2-core epoch
              use_side_info=False),   # as measured at 25M (the ML-100k default adds them)
    # ranking metrics on 1,000 users: the NN scores every item through its MLP (~75 ms a user at 59k items)
    NN: dict(n_factors=32, layers=[64], dropout=0.1, epochs=2, lr=5e-3, wd=0.1, batch_size=16384,
             use_side_info=True, sparse_grad=True, eval_users=1_000,
             biases=True, user_bag=0),   # a dense user bag would be 162k x 59k; output biases cost nothing
}
