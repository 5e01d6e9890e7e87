"""Model configuration: one dataclass, good defaults per model kind."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

KINDS = ("dot_bias", "embedding_nn")  # same spelling as tasks.contract.MODEL_KINDS
LOSSES = ("mse", "softmax")


@dataclass
class ModelConfig:
    """Hyper-parameters of one model; `for_kind` gives the tuned defaults."""

    kind: str = "dot_bias"            # 'dot_bias' | 'embedding_nn'
    n_factors: int = 50               # dot_bias: factors; embedding_nn: 0 = fastai's size rule
    layers: tuple[int, ...] = (100,)  # embedding_nn hidden layer widths
    dropout: float = 0.1              # embedding_nn dropout after each hidden layer
    epochs: int = 5
    lr: float = 5e-3                  # peak learning rate of the one-cycle schedule
    wd: float = 0.1                   # AdamW (decoupled) weight decay
    l2: float = 0.0                   # L2 penalty on the embedding rows used in each batch (classic MF)
    batch_size: int = 1024
    loss: str = "mse"                 # 'mse' (ratings) | 'softmax' (ranking over items)
    n_negatives: int = 0              # softmax: 0 = full softmax over all items, else shared sampled negatives
    rating_weight: float = 0.0        # softmax: weight of an extra MSE term that keeps predict() calibrated
    popularity_boost: float = 0.0     # dot_bias recommend(): item bias counts 1 + this (see DEFAULTS)
    y_range: tuple[float, float] = (0.0, 5.5)
    seed: int = 42
    use_side_info: bool = False       # user age/gender/occupation, item genres/year/decade, rating counts
    rating_input: bool = False        # dot_bias, mse: item vectors also encode the item's training ratings
    id_dropout: float = 0.0           # embedding_nn: share of ids replaced by "unknown" so side info learns cold start
    eval_users: int = 0               # evaluation: ranking metrics on a fixed sample of this many users; 0 = all
    serving_epochs: int = 0           # serving fit: 0 = refit from scratch for `epochs`; N = N epochs from the
                                      # evaluated model's weights at a tenth of `lr` (new ids start fresh)
    sparse_grad: bool = False         # id embeddings: sparse gradients + SparseAdam (lazy Adam, no wd; wd then
                                      # applies to the dense layers), so a step costs the batch's rows, not the tables
    item_item_weight: float = 0.0     # dot_bias softmax: lists rank z(dot) + this × z(item-item term) per user
                                      # (models/item_item.py; 0 = the dot model alone)
    item_item_window: int = 1         # item-item term: also count pairs rated within this many positions in time
    item_item_items: int = 5_000      # item-item term: over this many most-rated items (its inverse costs items³)
    item_item_l2: float = 400.0       # item-item term: λ added to its Gram matrix's diagonal
    extra: dict = field(default_factory=dict)  # free-form notes, kept with the model

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ModelConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"ModelConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.rating_input and (self.kind != "dot_bias" or self.loss != "mse"):
            raise ValueError("ModelConfig.rating_input needs kind='dot_bias' and loss='mse' (a ranking loss "
                             "would score each item with its own ratings in the input)")
        if self.popularity_boost and self.kind != "dot_bias":
            raise ValueError("ModelConfig.popularity_boost needs kind='dot_bias' (the NN has no item bias to boost)")
        if self.item_item_weight and (self.kind != "dot_bias" or self.loss != "softmax"):
            raise ValueError("ModelConfig.item_item_weight needs kind='dot_bias' and loss='softmax' (it blends "
                             "ranking scores)")
        self.layers = tuple(int(x) for x in self.layers)
        self.y_range = (float(self.y_range[0]), float(self.y_range[1]))
        for name, ok, rule in _RANGES:  # a value no fit can use fails here, not as torch's error mid-training
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"ModelConfig.{name} must be {rule}, got {value!r}")
        if not all(isinstance(w, int) and w >= 1 for w in self.layers) or not self.layers:
            raise ValueError(f"ModelConfig.layers must be one or more widths >= 1, got {list(self.layers)}")
        if not self.y_range[0] < self.y_range[1]:
            raise ValueError(f"ModelConfig.y_range must be (low, high) with low < high, got {self.y_range}")
        if self.serving_epochs and self.kind == "embedding_nn" and self.n_factors == 0:
            raise ValueError("ModelConfig.serving_epochs needs a fixed n_factors for the NN (0 sizes its embeddings "
                             "by the number of ids, which grows with the ratings a serving fit adds)")

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> "ModelConfig":
        """Tuned defaults for a kind (and objective, if `loss` is overridden), then overrides."""
        loss = overrides.get("loss", "mse")
        base = dict(DEFAULTS[(kind, loss)]) if (kind, loss) in DEFAULTS else {"kind": kind}
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        """Plain dict (lists, not tuples) for logging and saving."""
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["y_range"] = list(self.y_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of to_dict; unknown keys are refused."""
        return cls(**d)


# The values each numeric field may take: (field, test, the rule as the error states it).
_RANGES = (
    ("n_factors", lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0 (0: the NN's size rule)"),
    ("epochs", lambda v: float(v).is_integer() and v >= 1, "a whole number >= 1"),
    ("batch_size", lambda v: float(v).is_integer() and v >= 1, "a whole number >= 1"),
    ("n_negatives", lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0 (0: full softmax)"),
    ("eval_users", lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0 (0: all users)"),
    ("serving_epochs", lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0"),
    ("lr", lambda v: 0 < v < float("inf"), "a number > 0"),
    ("wd", lambda v: 0 <= v < float("inf"), "a number >= 0"),
    ("l2", lambda v: 0 <= v < float("inf"), "a number >= 0"),
    ("rating_weight", lambda v: 0 <= v < float("inf"), "a number >= 0"),
    ("dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("id_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("popularity_boost", lambda v: -1 <= v < float("inf"), "a number >= -1 (-1: item bias left out)"),
    ("item_item_weight", lambda v: 0 <= v < float("inf"), "a number >= 0 (0: no item-item term)"),
    ("item_item_window", lambda v: float(v).is_integer() and v >= 0, "a whole number >= 0 (0: co-ratings only)"),
    ("item_item_items", lambda v: float(v).is_integer() and v >= 1, "a whole number >= 1"),
    ("item_item_l2", lambda v: 0 < v < float("inf"), "a number > 0"),
)

# Tuned on real ML-100k (bench/bench_models.py, bench/results/models.md).
DEFAULTS: dict[tuple[str, str], dict] = {
    # Tuning-split RMSE (bench/results/models.md). Batch 256 at lr 3e-3 (was 1024 at 5e-3): dot 0.9016 ->
    # 0.8979 (3 training seeds), NN 0.9166 -> 0.8979 with 400 hidden units (2 seeds). rating_input: dot
    # 0.8979 -> 0.8876 (2 seeds). Side info (features + rating counts): dot, mean of tuning splits 1 and 2,
    # 0.8930 -> 0.8850; then 64 factors, wd 0.3, l2 0.005, 6 epochs, batch 512 (from a GPU random search):
    # 0.8817 at 0.7x the fit time. FAST_RATING keeps the cheap recipes.
    ("dot_bias", "mse"): dict(kind="dot_bias", n_factors=64, epochs=6, lr=3e-3, wd=0.3, l2=0.005, batch_size=512,
                              rating_input=True, use_side_info=True),
    ("embedding_nn", "mse"): dict(kind="embedding_nn", n_factors=0, layers=(400,), dropout=0.1, epochs=5,
                                  lr=3e-3, wd=0.1, batch_size=256, use_side_info=True),
    # popularity_boost 0.25 (rank with the item bias weighted 1.25): the highest catalogue coverage@10
    # within 99 % of the best NDCG@10 on tuning split seeds 1-2; on report seeds 3-4 it keeps 99.8 % of
    # boost 1's NDCG@10 with 28 % more coverage (bench/results/popularity_boost.md). The boost helps at
    # all because the softmax fits the pooled ratings, where heavy users weigh most, while per-user
    # metrics weigh every user alike and light users' held-out items are mostly popular ones.
    # use_side_info + item_item_weight 0.1 (window 3, λ 400): the dot model, with its users' and items' side
    # features, blended with a time-aware EDLAE term (models/item_item.py). Side features alone lower the dot
    # model's NDCG@10 (0.986 against 1.014 x EASE on five random tuning holdouts) but make it add more to the
    # term: 1.056 against 1.042 in the blend, with the two temporal tuning cutoffs as before (1.062; means over
    # three training seeds). The rule of bench/bench_item_item.py chose it: the best random mean among the
    # recipes that lose nothing on the cutoffs against the previous default (no side info, window 1, λ 200).
    # Report holdouts: 1.058 x EASE (was 1.039), the 0.80 cutoff 1.058 (was 1.081): published_quality.md.
    ("dot_bias", "softmax"): dict(kind="dot_bias", loss="softmax", n_factors=256, epochs=6, lr=1e-2, wd=0.0,
                                  l2=0.03, batch_size=1024, popularity_boost=0.25, use_side_info=True,
                                  item_item_weight=0.1, item_item_window=3),
    ("embedding_nn", "softmax"): dict(kind="embedding_nn", loss="softmax", n_factors=0, layers=(100,),
                                      dropout=0.1, epochs=5, lr=5e-3, wd=0.1, batch_size=1024,
                                      n_negatives=128, use_side_info=True),
}

# Cheaper rating recipes: less accurate, 3-9x faster (bench/results/models.md).
FAST_RATING: dict[str, dict] = {
    # dot: the default without rating_input (the costly part), 5 epochs at batch 1024 (tuning splits 1 and 2:
    # 0.8959 / 0.9046, against 0.8995 / 0.9071 for the first-round recipe with side info)
    "dot_bias": dict(DEFAULTS[("dot_bias", "mse")], epochs=5, lr=5e-3, batch_size=1024, rating_input=False),
    "embedding_nn": dict(DEFAULTS[("embedding_nn", "mse")], layers=(100,), lr=5e-3, batch_size=1024),
}

# Explicit settings for an ML-25M-size catalogue (162k users x 59k items) on a 2-core CPU, passed as
# `lensflow run --dot-config JSON --nn-config JSON` (bench/bench_scale.py, bench/results/scale.md): the
# ranking model with shared sampled negatives instead of a full softmax over the catalogue, narrow
# embeddings with sparse gradients (a step updates the batch's rows, not the 162k x 64 tables), large
# batches, few epochs, and the ranking metrics on a fixed sample of users (ranking every user against
# every item is an all-pairs scoring, the NN's far dearer than its training). Not tuned for accuracy.
LARGE_CATALOGUE: dict[str, dict] = {
    # serving_epochs 1: the serving fit continues the split fit for one epoch on all ratings instead of
    # refitting two (test NDCG@10 0.128 against the split fit's 0.118 at 25M, for half a refit's steps)
    "dot_bias": dict(loss="softmax", n_factors=64, n_negatives=256, epochs=2, lr=2e-2, wd=0.0, l2=0.03,
                     batch_size=8192, popularity_boost=0.25, sparse_grad=True, eval_users=3_000, serving_epochs=1,
                     item_item_weight=0.0,    # its co-rating count over 162k users costs more than a 2-core epoch
                     use_side_info=False),    # as measured at 25M (the ML-100k default adds them)
    # ranking metrics on 1,000 users: the NN scores every item through its MLP (~75 ms a user at 59k items)
    "embedding_nn": dict(n_factors=32, layers=[64], dropout=0.1, epochs=2, lr=5e-3, wd=0.1, batch_size=16384,
                         use_side_info=True, sparse_grad=True, eval_users=1_000),
}
