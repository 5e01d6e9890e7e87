"""Training glue: contract DataFrames in, the models API (raw-id arrays and feature dicts) out.

Plain functions, tested on tiny frames; the Prefect wrappers live in flows/steps.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from models import config as model_configs
from models import features as fx
from models.config import ModelConfig
from models.recommender import Recommender
from models.training_loop import pick_device
from tasks.core import contract as c
from tasks.learning import evaluate as ev
from tasks.learning import promotion
from tasks.core.errors import ConfigError
from tasks.core import settings
from tasks.learning.split import Split, unix_seconds


@dataclass(frozen=True)
class KindSettings:
    """What the pipeline does with one kind: its model config, and how that model is evaluated and served.

    eval_users and serving_epochs change no fitted model, so they stay out of the training fingerprint."""

    config: ModelConfig
    eval_users: int = 0         # ranking metrics on a fixed sample of this many users; 0 = all
    serving_epochs: int = 0     # serving fit: 0 = refit from scratch; N = N epochs from the champion's weights

    def __post_init__(self):
        for name in ("eval_users", "serving_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() \
                    or value < 0:
                raise ConfigError(f"model config for {self.config.kind}: {name} must be a whole number >= 0, "
                                  f"got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.serving_epochs and self.config.kind == c.MODEL_KIND_NN and self.config.n_factors == 0:
            raise ConfigError("model config for embedding_nn: serving_epochs needs a fixed n_factors (0 sizes the "
                              "NN's embeddings by the number of ids, which grows with the ratings a serving fit adds)")


def kind_settings(kind: str, overrides: dict | None = None) -> KindSettings:
    """A kind's tuned recipe with `--dot-config`/`--nn-config` overrides: model fields, eval_users, serving_epochs.

    A key the kind does not use is a ConfigError naming it (and why: another kind's field, another loss's)."""
    if kind not in c.MODEL_KINDS:
        raise ConfigError(f"model kind must be one of {c.MODEL_KINDS}, got {kind!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"model config for {kind} must be a JSON object, got {overrides!r}")
    overrides = dict(overrides or {})
    if overrides.get("kind", kind) != kind:
        raise ConfigError(f"config override kind={overrides['kind']!r} contradicts kind={kind!r}")
    overrides.pop("kind", None)
    plan = {name: overrides.pop(name) for name in ("eval_users", "serving_epochs") if name in overrides}
    try:
        config = model_configs.for_kind(kind, **overrides)
    except (TypeError, ValueError) as e:  # a key or value the config refuses
        raise ConfigError(f"model config for {kind}: {e}") from e
    return KindSettings(config, **plan)


def model_config(kind: str = c.MODEL_KIND_DOT, overrides: dict | None = None) -> ModelConfig:
    """The tuned recipe of a kind with overrides applied (keys it does not use raise ConfigError)."""
    return kind_settings(kind, overrides).config


def user_features(users: pd.DataFrame) -> dict:
    """User side features for the models: raw ids, age, gender and occupation (as strings)."""
    return {
        fx.USER_ID: users[c.USER_ID].to_numpy(np.int64),
        fx.AGE: users[c.AGE].to_numpy(np.float64),
        fx.GENDER: users[c.GENDER].astype(str).to_numpy(),
        fx.OCCUPATION: users[c.OCCUPATION].astype(str).to_numpy(),
    }


def release_year(movies: pd.DataFrame) -> np.ndarray:
    """Release year as float [n]; a missing or unparsable release date gives NaN.

    NaN is the documented fill: the models encode it as the mean year plus a "year unknown" flag.
    """
    dates = pd.to_datetime(movies[c.RELEASE_DATE], errors="coerce")
    return dates.dt.year.to_numpy(dtype=np.float64, na_value=np.nan)


def item_features(movies: pd.DataFrame) -> dict:
    """Item side features for the models: raw ids, genre flags [n, 19] in GENRE_COLUMNS order, year."""
    missing = [col for col in c.GENRE_COLUMNS if col not in movies.columns]
    if missing:
        raise ValueError(f"movies: missing genre column(s) {missing}")
    return {
        fx.ITEM_ID: movies[c.ITEM_ID].to_numpy(np.int64),
        fx.GENRES: movies[list(c.GENRE_COLUMNS)].to_numpy(dtype=bool),
        fx.YEAR: release_year(movies),
    }


def _arrays(ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (ratings[c.USER_ID].to_numpy(np.int64), ratings[c.ITEM_ID].to_numpy(np.int64),
            ratings[c.RATING].to_numpy(np.float32))


def fit(train: pd.DataFrame, config: ModelConfig, valid: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None, device=None,
        log=None, init: Recommender | None = None, epochs: int | None = None,
        lr: float | None = None) -> Recommender:
    """Fit a Recommender on contract rating frames; valid (if non-empty) gives per-epoch validation loss.

    `log(row)` is called after each epoch with its history row (the flows log it to the run); init, epochs,
    lr: a model to start from, and the schedule's epochs and peak rate if not config's (Recommender.fit).
    """
    valid_arrays = _arrays(valid) if valid is not None and len(valid) else None
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

        return Recommender.fit(*_arrays(train), config, valid=valid_arrays,
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
    dev = pick_device(settings.device(device))
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


# --- the registry side (tasks.registry.versions; imported lazily: MLflow is slow to import) -------------------

TAG_FINGERPRINT = "training_fingerprint"  # run tag: hash of kind, config, split, data and code


def fingerprint(config: ModelConfig, split_id: str, data_hash: str, code_version: str | None = None) -> str:
    """Id of a training's inputs (the model config, split, data, code): equal fingerprints give the same model."""
    if code_version is None:
        from tasks.registry.tracking import code_version as current_code

        code_version = current_code()
    payload = {"kind": config.kind, "config": model_configs.flat(config), "split_id": split_id,
               "data_hash": data_hash, "code": code_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_trained(paths, config: ModelConfig, split_id: str, data_hash: str):
    """The registered ModelRef of an identical earlier training, or None."""
    from tasks.registry import versions as registry

    fp = fingerprint(config, split_id, data_hash)
    return registry.find_by_tag(paths, config.kind, TAG_FINGERPRINT, fp)


def record(paths, result: TrainResult, split: Split, movies: pd.DataFrame | None, metric: str | None = None,
           k: int = 10, run_tags: dict[str, str] | None = None):
    """Log, register and maybe promote a training (tasks.registry.versions), tagged so find_trained sees it next time.

    metric: what promotion compares (default: the kind's job metric, tasks.learning.promotion). A champion trained on
    another split or data is re-scored on this split's validation part, so the comparison is always on the
    same validation data, as is the floor (popularity or the bias baseline). `run_tags` go on the MLflow run.
    """
    from tasks.registry import versions as registry

    metric = metric or promotion.PROMOTION_METRICS[result.config.kind]
    max_users = result.eval_users  # the champion and the floor are ranked on the newcomer's users

    def rescore(champion) -> dict[str, float]:
        part = split.valid if len(split.valid) else split.test
        return ev.evaluate(champion, split.train, part, k=k, max_users=max_users)

    tags = {**(run_tags or {}), TAG_FINGERPRINT: fingerprint(result.config, result.split_id, result.data_hash)}
    return registry.record_training(paths, result, result.data_hash, movies=movies, train=split.train,
                                    metric=metric, rescore=rescore, tags=tags,
                                    baseline=promotion_floor(split, metric, k, max_users),
                                    baseline_name=promotion.floor_name(metric))


def promotion_floor(split: Split, metric: str, k: int = 10, max_users: int = 0) -> dict[str, float]:
    """The floor's metrics on the part promotion compares on (valid, else test): popularity for a ranking
    metric, the bias baseline for a rating one, fitted on what the model was fitted on.

    max_users: the same user sample the model was ranked on (KindSettings.eval_users; 0 = all users)."""
    if len(split.valid):
        return promotion.floor_metrics(metric, split.train, split.valid, k=k, max_users=max_users)
    return promotion.floor_metrics(metric, pd.concat([split.train, split.valid], ignore_index=True), split.test,
                                   k=k, max_users=max_users)


# --- the serving fit: the evaluated config on every rating ---------------------------------------------

TAG_SERVING_FINGERPRINT = "serving_fingerprint"  # run tag: hash of kind, config, data, code and 'serving'


def serving_fingerprint(config: ModelConfig, data_hash: str, code_version: str | None = None,
                        start_from: str | None = None, serving_epochs: int = 0) -> str:
    """Id of a serving fit's inputs (config, all ratings of data_hash, code, and with serving_epochs > 0 that count
    and the MLflow run id of the model it continues): equal ones give the same model."""
    if code_version is None:
        from tasks.registry.tracking import code_version as current_code

        code_version = current_code()
    payload = {"kind": config.kind, "config": model_configs.flat(config), "data_hash": data_hash,
               "code": code_version, "fit": "serving"}
    if serving_epochs:
        if start_from is None:
            raise ValueError("a warm-started serving fit (serving_epochs > 0) is identified by the run it continues")
        payload.update(start_from=start_from, serving_epochs=serving_epochs)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_serving_fit(paths, config: ModelConfig, data_hash: str, start_from: str | None = None,
                     serving_epochs: int = 0):
    """The registered ModelRef of an identical earlier serving fit, or None."""
    from tasks.registry import versions as registry

    return registry.find_by_tag(paths, config.kind, TAG_SERVING_FINGERPRINT,
                                serving_fingerprint(config, data_hash, start_from=start_from,
                                                    serving_epochs=serving_epochs), decided=False)


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
    dev = pick_device(settings.device(device))
    t0 = time.perf_counter()
    if serving_epochs:
        rec = fit(ratings, config, None, users, movies, device=dev, init=evaluated, epochs=serving_epochs,
                  lr=config.train.lr * WARM_START_LR_SHARE)
    else:
        rec = fit(ratings, config, None, users, movies, device=dev)
    return rec, time.perf_counter() - t0, str(dev)
