"""The MLflow store of a data home: a client bound to it (created safely on first use), the experiment, and
the fluent API pointed at it for a block. Every call takes the data home (`Paths`) and talks to MLflow
through an explicit `MlflowClient`; the one fluent call MLflow needs (`mlflow.pyfunc.log_model`) runs inside
`using_tracking_uri`, which puts the previous tracking URI back afterwards, so nothing leaks between callers.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from tasks.core import settings
from tasks.core.settings import Paths

EXPERIMENT = "lensflow"
EXPERIMENT_DESCRIPTION = (
    "lensflow: one run per training of a MovieLens recommender on a stored split of one lake snapshot: dot_bias "
    "ranks (promoted on valid_ndcg_at_10 above plain popularity), embedding_nn predicts ratings (promoted on "
    "valid_rmse above a user/item bias baseline); a serving fit (run name ...-serving-fit-of-vN) refits a champion's "
    "config on every rating. Parameters: the settings its model kind uses. Metrics, in the order of a run's chart "
    "sections: the metric it is promoted on (job/valid_ndcg_at_10, job/test_ndcg_at_10, the same values as "
    "valid_ndcg_at_10 and test_ndcg_at_10), per-epoch losses named by loss (loss/train_mse, loss/valid_softmax_ce, "
    "...), the floor on the same data (promotion_floor/popularity_valid_*, promotion_floor/bias_baseline_valid_*), "
    "time/epoch_seconds, and last the kind's test_ and valid_ metrics. Tags: model_kind, split_id, "
    "data_hash, code_version, device, train_seconds and the Prefect flow run (prefect.flow_run_id, "
    "prefect.flow_run_name). The registered models lensflow-dot_bias and lensflow-embedding_nn say which version "
    "serves, and each version its promotion decision and why.")
TAG_NOTE = "mlflow.note.content"          # MLflow shows this experiment/run tag as the description
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"

_FLUENT_LOCK = threading.RLock()
_BAD_KEY = re.compile(r"[^\w\-. /:]")     # characters MLflow refuses in param/metric names


def client(paths: Paths) -> MlflowClient:
    """A client bound to the data home's tracking store and registry (the same SQLite file by default)."""
    uri = paths.mlflow_tracking_uri
    if not uri.startswith("sqlite:"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    paths.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    # Opening a SQLite store runs MLflow's schema migrations; two processes doing that at once (two
    # training workers) collide ("table _alembic_tmp_experiments already exists"). One at a time.
    with FileLock(str(paths.mlflow_db) + ".lock", timeout=300):
        if uri == f"sqlite:///{paths.mlflow_db}" and not paths.mlflow_db.exists():
            _create_store(paths.mlflow_db)
        cl = MlflowClient(tracking_uri=uri, registry_uri=uri)
        cl._get_registry_client()  # the registry store migrates too; open it under the lock as well
        return cl


def _create_store(db: Path) -> None:
    """Create the SQLite store (MLflow's ~50 schema migrations) under a temporary name, then rename it.

    A process killed mid-migration then leaves a stray temporary file, not a half-migrated store that
    every later run fails on ("table ... already exists"). Called with the migration lock held.
    """
    tmp = db.with_name(f".{db.name}.tmp-{uuid.uuid4().hex}")
    try:
        cl = MlflowClient(tracking_uri=f"sqlite:///{tmp}", registry_uri=f"sqlite:///{tmp}")
        for store in (cl._tracking_client.store, cl._get_registry_client().store):
            engine = getattr(store, "engine", None)
            if engine is not None:
                engine.dispose()  # close the file before it is renamed
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for the block, then restore whatever was set before."""
    # The URI is process-global: one block at a time, or a thread finishing first would pull the URI
    # from under another (Prefect runs the two trainings' tasks in threads).
    with _FLUENT_LOCK:
        # set_tracking_uri also exports MLFLOW_TRACKING_URI (for subprocesses): put both back as they were
        previous, previous_env = tracking_utils._tracking_uri, os.environ.get(ENV_TRACKING_URI)
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
            if previous_env is None:
                os.environ.pop(ENV_TRACKING_URI, None)
            else:
                os.environ[ENV_TRACKING_URI] = previous_env


def experiment_id(paths: Paths, name: str = EXPERIMENT, mlflow_client: MlflowClient | None = None) -> str:
    """The experiment's id, creating it with artifacts under `<home>/mlflow/artifacts` for a local store."""
    cl = mlflow_client or client(paths)
    found = cl.get_experiment_by_name(name)
    if found is not None:
        if name == EXPERIMENT and found.tags.get(TAG_NOTE) != EXPERIMENT_DESCRIPTION:
            cl.set_experiment_tag(found.experiment_id, TAG_NOTE, EXPERIMENT_DESCRIPTION)
        return found.experiment_id
    # A tracking server chooses its own artifact root (--default-artifact-root / proxied artifacts).
    location = paths.mlflow_artifacts.as_uri() if paths.mlflow_tracking_uri.startswith("sqlite:") else None
    tags = {TAG_NOTE: EXPERIMENT_DESCRIPTION} if name == EXPERIMENT else None
    try:
        return cl.create_experiment(name, artifact_location=location, tags=tags)
    except MlflowException as e:  # another process created it between the two calls
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return cl.get_experiment_by_name(name).experiment_id


def metric_key(name: str) -> str:
    """An MLflow-safe metric/param name: 'ndcg@10' -> 'ndcg_10'."""
    return _BAD_KEY.sub("_", str(name))


def run_url(tracking_uri: str, experiment: str, run_id: str) -> str:
    """The run's page in the MLflow UI the operator opens (tasks.core.settings.mlflow_ui_url says which)."""
    return f"{settings.mlflow_ui_url(tracking_uri)}/#/experiments/{experiment}/runs/{run_id}"


def version_url(tracking_uri: str, name: str, version: str) -> str:
    """A registered model version's page in the same MLflow UI."""
    return f"{settings.mlflow_ui_url(tracking_uri)}/#/models/{name}/versions/{version}"
