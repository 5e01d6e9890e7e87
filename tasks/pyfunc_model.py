"""MLflow pyfunc wrapper of a saved Recommender: ratings for (user, item) pairs, or top-k items per user.

Logged as MLflow "models from code": MLflow copies this file into every model version and runs it at
load time, next to the `models` package shipped with `code_paths`. So it imports only mlflow, numpy,
pandas and `models` (never `tasks`), and column names arrive through `model_config` (see
`tasks.registry.pyfunc_model_config`), which keeps `tasks.contract` their one owner.

    model = mlflow.pyfunc.load_model("models:/lensflow-dot_bias@champion")
    model.predict(pairs)                                          # pairs: user/item ids -> ratings
    model.predict(users, params={"mode": "recommend", "k": 10})   # -> user, rank, item, score rows
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

ARTIFACT_KEY = "recommender"         # key of the Recommender file in `artifacts`
MODE_PREDICT, MODE_RECOMMEND = "predict", "recommend"
DEFAULT_K = 10
CONFIG_KEYS = ("user_column", "item_column", "rating_column", "rank_column", "score_column")


class RecommenderModel(PythonModel):
    """Serves a `models.recommender.Recommender` saved file; `params` pick the mode and k."""

    def load_context(self, context):
        """Load the Recommender once per process, on CPU."""
        from models.recommender import Recommender  # shipped in the model's code/ folder

        self.recommender = Recommender.load(context.artifacts[ARTIFACT_KEY], device="cpu")
        missing = [k for k in CONFIG_KEYS if k not in (context.model_config or {})]
        if missing:
            raise ValueError(f"pyfunc model_config lacks {missing}; log the model with tasks.registry")
        self.cols = {k: context.model_config[k] for k in CONFIG_KEYS}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """mode='predict': one rating per (user, item) row; mode='recommend': k best items per distinct user."""
        params = params or {}
        mode = params.get("mode") or MODE_PREDICT
        cols = self.cols
        users = _ids(model_input, cols["user_column"])
        if mode == MODE_PREDICT:
            items = _ids(model_input, cols["item_column"])
            ratings = np.asarray(self.recommender.predict(users, items), dtype=np.float32)
            return pd.DataFrame({cols["rating_column"]: ratings})
        if mode == MODE_RECOMMEND:
            k = int(params.get("k") or DEFAULT_K)
            if k < 1:
                raise ValueError(f"params['k'] must be >= 1, got {k}")
            distinct = pd.unique(users)
            item_ids, scores = self.recommender.recommend(distinct, k)
            item_ids, scores = np.asarray(item_ids), np.asarray(scores, dtype=np.float32)
            n, width = item_ids.shape  # (n_users, k) — k may shrink when the catalogue is smaller
            return pd.DataFrame({
                cols["user_column"]: np.repeat(distinct, width),
                cols["rank_column"]: np.tile(np.arange(1, width + 1), n),
                cols["item_column"]: item_ids.reshape(-1),
                cols["score_column"]: scores.reshape(-1),
            })
        raise ValueError(f"params['mode'] must be {MODE_PREDICT!r} or {MODE_RECOMMEND!r}, got {mode!r}")


def _ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"model input lacks column {column!r} (has {list(frame.columns)})")
    return frame[column].to_numpy(dtype=np.int64)


set_model(RecommenderModel())
