"""The tuned recipe of each model kind (and loss), the cheaper and the large-catalogue settings, and
`for_kind`: a recipe with flat overrides on top."""

from __future__ import annotations

from models.config import (
    CONFIGS, DOT, KINDS, NN, DotConfig, ItemItem, ModelConfig, Mse, NNConfig, Softmax, TrainConfig, flat, from_flat,
    plain,
)

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
# 128: 0.8935, 256: 0.8932. The item's rating column as input made it worse (0.8988 with both bags at 32). Then
# id_dropout 0.1 (a tenth of the ids hidden while training, so the side features learn to stand in for users
# without ratings): 0.8935 still, and for 50 held-out users per split scored as unknown 0.8987 / 1.0721 / 1.1208
# against 0.9138 / 1.0759 / 1.1253 without (better on all three seeds). Then the rating's time as input
# (time_features, models/time_features.py: its place in the user's history, and the residuals of the user's
# training ratings within 20 s .. 1 day of it): 0.8937 -> 0.8744 (four features of the history alone: 0.8917;
# windows of 1, 3, 10 min and 1 day: 0.8781), and lr 2e-3: 0.8726 (1.5e-3: 0.8725, 5e-3 worse; wd 0.3, dropout
# 0.3, 4 or 6 epochs no better). Its gain is for ratings at known times inside the training period; asked for
# "now", the windows are empty, and that model served far worse than without time (published warm-user RMSE
# 0.961-0.975 against 0.898-0.905). So a prediction without a time reads zeros ("time unknown"), and training
# shows time_dropout of the ratings that way (and every hidden user id): asked without times on the tuning seeds,
# 0.3: 0.8960, 0.5: 0.8946, 0.7: 0.8933 (the recipe without time input: 0.8937), with times 0.8728 / 0.8738 /
# 0.8740. NeuMF's product of the two halves (product 64) made it worse: 0.9027. Then (with times / without): dropout 0
# 0.8740 / 0.8935, the same accuracy for 14 % less CPU a step (dropout's Bernoulli mask); the user bag read as
# raw stars instead of centred on the mean, so its code also says which films were rated (SVD++'s implicit feedback,
# at no cost): 0.8717 / 0.8915 (a second, 0/1 bag of rated films instead: 0.8721 / 0.8916 at +40 % CPU); lr 1.5e-3:
# 0.8708 / 0.8902 (1e-3: 0.8732, 1.2e-3: 0.8713, 2e-3: 0.8717, 3e-3: 0.8735).
RATING = NNConfig(n_factors=0, layers=(400,), dropout=0.0, id_dropout=0.1, use_side_info=True, biases=True,
                  user_bag=128, time_features=True, time_dropout=0.7,
                  train=TrainConfig(epochs=5, lr=1.5e-3, wd=0.1, batch_size=256))

DEFAULTS: dict[str, ModelConfig] = {DOT: RANKING, NN: RATING}
RECIPES: dict[tuple[str, str], ModelConfig] = {(DOT, Softmax.name): RANKING, (DOT, Mse.name): DOT_RATING,
                                               (NN, Mse.name): RATING}

# Cheaper rating recipes: less accurate, 3-9x faster (bench/results/models.md), as flat overrides of for_kind.
FAST_RATING: dict[str, dict] = {
    DOT: dict(loss="mse", epochs=5, lr=5e-3, batch_size=1024, rating_input=False),
    NN: dict(layers=[100], dropout=0.1, lr=5e-3, batch_size=1024, biases=False, user_bag=0,   # as measured before
             time_features=False),                                                              # those parts
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
             biases=True, user_bag=0,    # a dense user bag would be 162k x 59k; output biases cost nothing
             time_features=False,        # not measured at 25M (its tables hold every training timestamp)
             serving_epochs=1),          # the serving fit continues the champion for one epoch, as the dot model's
}


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
        values.update({"item_item_" + k: v for k, v in plain(ItemItem()).items()})
    return from_flat(kind, {**values, **overrides})
