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

DOT, NN = "dot_bias", "embedding_nn"   # as tasks.core.contract.MODEL_KINDS (tests/models/test_recommender.py
                                       # test_config_kinds_match_the_contract checks it)
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
    "product": (_whole(0), "a whole number >= 0 (0: none)"),
    "time_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
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
    product: int = 0                  # width of the element-wise product of user and item projections of the
                                      # MLP's two input halves, fed to its first layer (NeuMF); 0 = none
    time_features: bool = False       # the rating's time in the user half of the input (models/time_features.py);
                                      # the fit needs each rating's time, a prediction without one reads zeros
    time_dropout: float = 0.0         # share of training ratings shown without their time (zeros), so that a
                                      # prediction without one (serving) is one the model has learnt
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
            out.update(plain(value))
        elif f.name in _BLOCKS:
            if value is not None:
                out.update({_BLOCKS[f.name][0] + k: v for k, v in plain(value).items()})
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def plain(block) -> dict:
    return {f.name: (list(v) if isinstance(v := getattr(block, f.name), tuple) else v)
            for f in dataclasses.fields(block)}


def keys_of(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def all_keys(kind: str) -> list[str]:
    """Every key a config of this kind may have, whatever its loss or blend."""
    keys = [k for k in keys_of(CONFIGS[kind]) if k not in ("loss", "train", "item_item")] + keys_of(TrainConfig)
    if kind == DOT:
        keys += ["loss", *keys_of(Softmax), *("item_item_" + k for k in keys_of(ItemItem))]
    keys += keys_of(Mse)
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
    take = lambda cls, prefix="": {k: rest.pop(prefix + k) for k in keys_of(cls) if prefix + k in rest}  # noqa: E731
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
        if key.startswith("item_item_") or key in keys_of(Softmax):
            return f"'{key}' applies to loss 'softmax' only (this {kind} config's loss is '{loss}')"
        return f"'{key}' applies to loss 'mse' only (this {kind} config's loss is '{loss}')"
    other = [k for k in KINDS if k != kind and key in all_keys(k)]
    if other:
        return f"'{key}' does not apply to {kind} (it is a setting of {other[0]})"
    near = difflib.get_close_matches(key, all_keys(kind), 1)
    return f"unknown setting '{key}'" + (f" (did you mean '{near[0]}'?)" if near else "")
