"""MLflow pyfunc wrapper of a saved Recommender: scores for (user, item) pairs, or top-k items per user.

Logged as MLflow "models from code": MLflow copies this file into every model version and runs it at
load time, next to the `models` package shipped with `code_paths`. So it imports only mlflow, numpy,
pandas and `models` (never `tasks`), and column names arrive through `model_config` (see
`tasks.tracking.pyfunc_model_config`), which keeps `tasks.core.contract` their one owner.

    model = mlflow.pyfunc.load_model("models:/lensflow-dot_bias@serving")
    model.predict(pairs)                                          # user_id, item_id -> one value per row
    model.predict(users, params={"mode": "recommend", "k": 10})   # -> user_id, rank, item_id, value rows
    new = pd.DataFrame({"user_id": [5000], "age": [23], "gender": ["F"], "occupation": ["student"]})
    model.predict(new, params={"mode": "recommend"})              # a new user scored from side features

The value column is `rating` for a rating model (loss 'mse': predicted stars) and `score` for a
ranking model (loss 'softmax': a ranking score, not a rating). `recommend` never returns an item the
user rated in the model's training data: those (user, item) pairs travel inside the model
(artifact `seen`, int32 pairs). Side-feature columns (age, gender, occupation) are optional; a model
trained with side information scores users it does not know from them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

ARTIFACT_KEY = "recommender"         # key of the Recommender file in `artifacts`
SEEN_KEY = "seen"                    # key of the training (user, item) pairs file (.npz) in `artifacts`
MODE_PREDICT, MODE_RECOMMEND = "predict", "recommend"
DEFAULT_K = 10
CONFIG_KEYS = ("user_column", "item_column", "rating_column", "rank_column", "score_column")
FEATURE_KEYS = ("age_column", "gender_column", "occupation_column", "rating_min", "rating_max")


def save_seen(path, users, items) -> None:
    """Write the training (user, item) pairs the pyfunc excludes from `recommend` (compressed int32)."""
    np.savez_compressed(path, users=np.asarray(users, dtype=np.int32), items=np.asarray(items, dtype=np.int32))


class RecommenderModel(PythonModel):
    """Serves a `models.recommender.Recommender` saved file; `params` pick the mode and k."""

    def load_context(self, context):
        """Load the Recommender (and the training pairs it must not recommend) once per process, on CPU."""
        from models.recommender import Recommender  # shipped in the model's code/ folder

        self.recommender = Recommender.load(context.artifacts[ARTIFACT_KEY], device="cpu")
        missing = [k for k in CONFIG_KEYS if k not in (context.model_config or {})]
        if missing:
            raise ValueError(f"pyfunc model_config lacks {missing}; log the model with tasks.registry.tracking")
        self.cols = {k: context.model_config[k] for k in CONFIG_KEYS + FEATURE_KEYS if k in context.model_config}
        self.seen = None
        if SEEN_KEY in context.artifacts:
            with np.load(context.artifacts[SEEN_KEY]) as f:
                self.seen = (f["users"].astype(np.int64), f["items"].astype(np.int64))

    @property
    def value_column(self) -> str:
        """`rating` for a rating model (loss mse), `score` for a ranking model."""
        return self.cols["rating_column"] if self.recommender.rates else self.cols["score_column"]

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """mode='predict': one value per (user, item) row; mode='recommend': k best unseen items per distinct user."""
        params = params or {}
        mode = params.get("mode") or MODE_PREDICT
        cols = self.cols
        users = _ids(model_input, cols["user_column"])
        features = self._user_features(model_input)
        if mode == MODE_PREDICT:
            items = _ids(model_input, cols["item_column"])
            values = np.asarray(self.recommender.predict(users, items, user_features=features), dtype=np.float32)
            if self.recommender.rates and "rating_min" in self.cols:   # the star scale, as the tables publish it
                values = np.clip(values, self.cols["rating_min"], self.cols["rating_max"])
            return pd.DataFrame({self.value_column: values})
        if mode == MODE_RECOMMEND:
            k = int(params.get("k") or DEFAULT_K)
            if k < 1:
                raise ValueError(f"params['k'] must be >= 1, got {k}")
            distinct = pd.unique(users)
            exclude = None
            if self.seen is not None:
                mine = np.isin(self.seen[0], distinct)
                exclude = (self.seen[0][mine], self.seen[1][mine])
            item_ids, scores = self.recommender.recommend(distinct, k, exclude=exclude, user_features=features)
            item_ids, scores = np.asarray(item_ids), np.asarray(scores, dtype=np.float32)
            n, width = item_ids.shape  # (n_users, k) — k may shrink when the catalogue is smaller
            out = pd.DataFrame({
                cols["user_column"]: np.repeat(distinct, width),
                cols["rank_column"]: np.tile(np.arange(1, width + 1), n),
                cols["item_column"]: item_ids.reshape(-1),
                self.value_column: scores.reshape(-1),
            })
            return out[out[cols["item_column"]] >= 0].reset_index(drop=True)  # users with < k unseen items
        raise ValueError(f"params['mode'] must be {MODE_PREDICT!r} or {MODE_RECOMMEND!r}, got {mode!r}")

    def _user_features(self, frame: pd.DataFrame) -> dict | None:
        """The side-feature columns given (one row per distinct user), as the models' feature dict."""
        from models import features as fx   # from the model's code/ folder, as Recommender above

        names = {fx.AGE: self.cols.get("age_column"), fx.GENDER: self.cols.get("gender_column"),
                 fx.OCCUPATION: self.cols.get("occupation_column")}
        given = {key: col for key, col in names.items() if col and col in frame.columns}
        if not given:
            return None
        if len(given) < len(names):
            lacking = sorted(col for key, col in names.items() if key not in given)
            raise ValueError(f"side features need all of age, gender and occupation; input lacks {lacking}")
        rows = frame.drop_duplicates(self.cols["user_column"])
        out = {fx.USER_ID: rows[self.cols["user_column"]].to_numpy(np.int64),
               fx.AGE: rows[given[fx.AGE]].to_numpy(np.float64)}
        for key in (fx.GENDER, fx.OCCUPATION):
            out[key] = rows[given[key]].astype(str).to_numpy()
        return out


def _ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"model input lacks column {column!r} (has {list(frame.columns)})")
    return frame[column].to_numpy(dtype=np.int64)


set_model(RecommenderModel())
