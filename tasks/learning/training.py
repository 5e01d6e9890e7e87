"""Fitting the models on contract rating frames: a training on a split (fit, then metrics on valid and test)
and the serving fit on every rating.

Plain functions, tested on tiny frames; the Prefect wrappers live in flows/steps.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from models.config import ModelConfig
from models.recommender import Recommender
from models.training_loop import pick_device
from tasks.core import contract as c
from tasks.learning import evaluate as ev
from tasks.learning.model_inputs import item_features, rating_arrays, user_features
from tasks.learning.split import unix_seconds
from tasks.stores.split_store import Split


def fit(train: pd.DataFrame, config: ModelConfig, valid: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None, device=None,
        log=None, init: Recommender | None = None, epochs: int | None = None,
        lr: float | None = None) -> Recommender:
    """Fit a Recommender on contract rating frames; valid (if non-empty) gives per-epoch validation loss.

    `log(row)` is called after each epoch with its history row (the flows log it to the run); init, epochs,
    lr: a model to start from, and the schedule's epochs and peak rate if not config's (Recommender.fit).
    """
    valid_arrays = rating_arrays(valid) if valid is not None and len(valid) else None
    if valid_arrays is not None and getattr(config, "time_features", False) and c.RATED_AT in valid:
        valid_arrays = (*valid_arrays, unix_seconds(valid[c.RATED_AT]))   # a model with time input: their times
    # One bar per model on a terminal (tqdm disables itself when stderr is not a TTY, e.g. in CI).
    with tqdm(total=epochs or config.train.epochs, desc=f"train {config.kind}", unit="epoch", disable=None, leave=False) as bar:
        def progress(h: dict) -> None:
            shown = {"train": f"{h['train_loss']:.4f}"}
            if h.get("valid_loss") is not None:
                shown["valid"] = f"{h['valid_loss']:.4f}"
            bar.set_postfix(shown)
            bar.update(1)
            if log is not None:
                log(h)

        return Recommender.fit(*rating_arrays(train), config, valid=valid_arrays,
                               user_features=user_features(users) if users is not None else None,
                               item_features=item_features(movies) if movies is not None else None,
                               device=device, log=progress, init=init, epochs=epochs, lr=lr,
                               times=unix_seconds(train[c.RATED_AT]) if c.RATED_AT in train else None)


@dataclass
class TrainResult:
    """A fitted model, its metrics on test and on valid, per-epoch history, wall time and device."""

    recommender: Recommender
    config: ModelConfig
    metrics: dict[str, float]                 # on the test part, train and valid items excluded
    valid_metrics: dict[str, float]           # on the valid part, train items excluded ({} without valid)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0                      # fit + evaluation
    device: str = "cpu"
    split_id: str | None = None
    split_reused: bool = False                # the split came from the store, not computed now
    data_hash: str | None = None              # lake data hash the split was made from (lineage)
    eval_users: int = 0                       # the ranking metrics' user sample (0 = every user)


def train_and_evaluate(split: Split, config: ModelConfig, users: pd.DataFrame | None = None,
                       movies: pd.DataFrame | None = None, k: int = 10, device=None, log=None,
                       eval_users: int = 0) -> TrainResult:
    """Fit on split.train (early signal from split.valid), then evaluate on valid and on test.

    Test ranking excludes everything the user rated before test time (train and valid); `log(row)` gets
    each epoch's history row as it ends; eval_users > 0 ranks a fixed sample of that many users.
    """
    dev = pick_device(device)
    t0 = time.perf_counter()
    rec = fit(split.train, config, split.valid, users, movies, device=dev, log=log)
    seen = pd.concat([split.train, split.valid], ignore_index=True)
    metrics = ev.evaluate(rec, seen, split.test, k=k, max_users=eval_users)
    valid_metrics = ev.evaluate(rec, split.train, split.valid, k=k, max_users=eval_users) \
        if len(split.valid) else {}
    return TrainResult(recommender=rec, config=config, metrics=metrics, valid_metrics=valid_metrics,
                       history=rec.history, seconds=time.perf_counter() - t0, device=str(dev),
                       split_id=split.split_id, split_reused=split.reused,
                       data_hash=split.data_hash, eval_users=eval_users)


def summarize(result: TrainResult) -> dict:
    """A JSON-friendly summary of an unregistered training (same keys as tasks.runs.report.training_summary)."""
    metrics = {**{f"test_{k}": v for k, v in result.metrics.items()},
               **{f"valid_{k}": v for k, v in result.valid_metrics.items()}}
    return {"kind": result.config.kind, "version": None, "split_id": result.split_id,
            "data_hash": result.data_hash, "reused": False, "split_reused": result.split_reused,
            "device": result.device, "train_seconds": result.seconds, "metrics": metrics,
            "history": result.history}


# A warm-started serving fit trains at this share of the config's peak learning rate. Measured at ML-25M size
# (bench/results/scale.md): one epoch on all 20M kept ratings from the 2-epoch split fit scored test NDCG@10
# 0.128 at a tenth of the peak rate, against 0.058 at the full rate and 0.118 for the split fit as it was.
WARM_START_LR_SHARE = 0.1


def fit_for_serving(ratings: pd.DataFrame, config: ModelConfig, users: pd.DataFrame | None = None,
                    movies: pd.DataFrame | None = None, device=None, evaluated: Recommender | None = None,
                    serving_epochs: int = 0) -> tuple[Recommender, float, str]:
    """Fit `config` on every rating (no holdout): (recommender, seconds, device).

    serving_epochs 0: from scratch for the same epoch count, so the one-cycle schedule stretches with the
    larger epochs. N > 0: N epochs from `evaluated` (the champion's weights) at WARM_START_LR_SHARE of the
    peak rate, a fraction of a refit's cost at large sizes; a user or item the champion never saw starts fresh."""
    if serving_epochs and evaluated is None:
        raise ValueError("serving_epochs > 0 needs the evaluated model to start from")
    dev = pick_device(device)
    t0 = time.perf_counter()
    if serving_epochs:
        rec = fit(ratings, config, None, users, movies, device=dev, init=evaluated, epochs=serving_epochs,
                  lr=config.train.lr * WARM_START_LR_SHARE)
    else:
        rec = fit(ratings, config, None, users, movies, device=dev)
    return rec, time.perf_counter() - t0, str(dev)
