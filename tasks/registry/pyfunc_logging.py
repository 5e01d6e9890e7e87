"""The trained Recommender as a self-contained MLflow pyfunc model in its run ("models from code":
tasks/registry/pyfunc_model.py is copied into the model, the `models` package shipped with it).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from tasks.core import contract as c
from tasks.core import durable
from tasks.core.settings import Paths
from tasks.registry import pyfunc_model as pm
from tasks.registry.mlflow_store import metric_key, using_tracking_uri

RECOMMENDER_FILE = "recommender.pt"       # the Recommender's saved file inside the model's artifacts
SEEN_FILE = "seen.npz"                    # the training (user, item) pairs the pyfunc never recommends
MODELS_PACKAGE = Path(__file__).resolve().parents[2] / "models"     # shipped with every model version (code_paths)
PYFUNC_FILE = Path(pm.__file__)           # "models from code": copied into the model, run at load

# What a scoring process needs at run time: numpy/pandas/torch and mlflow itself. Listed by hand,
# because MLflow's inference imports the model and guesses (slow, and wrong for this project).
PIP_REQUIREMENTS = ("mlflow==3.17.2", "torch==2.13.0", "numpy>=2.4", "pandas>=3.1")



def pyfunc_model_config() -> dict[str, str]:
    """Column names handed to the pyfunc model (it cannot import the contract)."""
    return {"user_column": c.USER_ID, "item_column": c.ITEM_ID, "rating_column": c.RATING,
            "rank_column": c.RANK, "score_column": c.SCORE, "age_column": c.AGE, "gender_column": c.GENDER,
            "occupation_column": c.OCCUPATION, "rating_min": c.RATING_MIN, "rating_max": c.RATING_MAX}


def pyfunc_signature() -> ModelSignature:
    """Input: user ids (item ids for mode 'predict', optional side features); params: mode and k."""
    inputs = Schema([ColSpec("long", c.USER_ID), ColSpec("long", c.ITEM_ID, required=False),
                     ColSpec("long", c.AGE, required=False), ColSpec("string", c.GENDER, required=False),
                     ColSpec("string", c.OCCUPATION, required=False)])
    params = ParamSchema([ParamSpec("mode", "string", pm.MODE_PREDICT), ParamSpec("k", "long", pm.DEFAULT_K)])
    return ModelSignature(inputs=inputs, outputs=pyfunc_outputs(), params=params)


def pyfunc_outputs() -> Schema:
    """Output columns of both modes, each optional: a rating (or score) per row for 'predict'; user,
    rank, item and score rows for 'recommend'."""
    return Schema([ColSpec("float", c.RATING, required=False), ColSpec("long", c.USER_ID, required=False),
                   ColSpec("long", c.RANK, required=False), ColSpec("long", c.ITEM_ID, required=False),
                   ColSpec("float", c.SCORE, required=False)])


def input_example(train: pd.DataFrame | None) -> pd.DataFrame | None:
    """Two real (user, item) pairs from the training data, as the model's input example."""
    if train is None or len(train) == 0:
        return None
    rows = train[[c.USER_ID, c.ITEM_ID]].head(2)
    return pd.DataFrame({c.USER_ID: rows[c.USER_ID].astype("int64").to_numpy(),
                         c.ITEM_ID: rows[c.ITEM_ID].astype("int64").to_numpy()})


def log_pyfunc(paths: Paths, run_id: str, recommender, train: pd.DataFrame | None = None, *, name: str):
    """Log the Recommender as a self-contained pyfunc model named `name` in the run; MLflow's ModelInfo.

    `train`'s (user, item) pairs go into the model too (artifact `seen`): its `recommend` leaves them out.
    """
    with durable.scratch_dir(paths, "lensflow-model-") as tmp:
        weights = Path(tmp) / RECOMMENDER_FILE
        recommender.save(weights)
        artifacts = {pm.ARTIFACT_KEY: str(weights)}
        if train is not None and len(train):
            seen = Path(tmp) / SEEN_FILE
            pm.save_seen(seen, train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy())
            artifacts[pm.SEEN_KEY] = str(seen)
        with using_tracking_uri(paths.mlflow_tracking_uri), mlflow.start_run(run_id=run_id):
            return mlflow.pyfunc.log_model(
                name=metric_key(name),
                python_model=str(PYFUNC_FILE),
                artifacts=artifacts,
                code_paths=[str(MODELS_PACKAGE)],
                model_config=pyfunc_model_config(),
                signature=pyfunc_signature(),
                input_example=input_example(train),
                pip_requirements=list(PIP_REQUIREMENTS),
            )
