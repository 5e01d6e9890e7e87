"""MLflow tracking: one run per training with its config, per-epoch losses, metrics, lineage tags,
pictures and the self-contained pyfunc model.

Every call takes the data home (`Paths`) and talks to MLflow through an explicit `MlflowClient`; the
one fluent call MLflow needs (`mlflow.pyfunc.log_model`) runs inside `using_tracking_uri`, which puts
the previous tracking URI back afterwards, so nothing leaks between tests or callers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
from filelock import FileLock
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from tasks.core import contract as c
from tasks.core import durable
from tasks.registry import plots
from tasks.registry import pyfunc_model as pm
from tasks.core.settings import Paths

EXPERIMENT = "lensflow"
EXPERIMENT_DESCRIPTION = (
    "lensflow: one run per training of a MovieLens recommender (dot_bias, embedding_nn) on a stored split "
    "of one lake snapshot. Parameters: the settings its model kind uses. Metrics: per-epoch losses named by loss "
    "(train_mse / valid_mse for rating models, train_softmax_ce / valid_softmax_ce for ranking models), "
    "then test_* and valid_* rating and top-10 metrics, and popularity_valid_* (plain most-rated items, "
    "the baseline) where logged. Tags: model_kind, split_id, data_hash, code_version, device, train_seconds and the Prefect "
    "flow run (prefect.flow_run_id, prefect.flow_run_name). Promotion compares valid_ndcg_at_10; the "
    "registered models lensflow-<kind> carry the decision and its reason on each version.")
TAG_NOTE = "mlflow.note.content"          # MLflow shows this experiment/run tag as the description
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
RECOMMENDER_FILE = "recommender.pt"       # the Recommender's saved file inside the model's artifacts
SEEN_FILE = "seen.npz"                    # the training (user, item) pairs the pyfunc never recommends
REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_PACKAGE = REPO_ROOT / "models"     # shipped with every model version (code_paths)
PYFUNC_FILE = Path(pm.__file__)           # "models from code": copied into the model, run at load

# Tags on runs and model versions (lineage). Split id and data hash keep their contract names.
TAG_KIND = "model_kind"
TAG_CODE_VERSION = "code_version"
TAG_DEVICE = "device"
TAG_TRAIN_SECONDS = "train_seconds"
TAG_MODEL_ID = "logged_model_id"
TAG_MODEL_URI = "logged_model_uri"
TAG_FLOW_RUN_ID = "prefect.flow_run_id"   # the Prefect flow run that trained it (set by flows/, passed as a tag)
TAG_FLOW_RUN_NAME = "prefect.flow_run_name"
# A history's loss columns are logged under the name of the loss they measure, so MLflow's comparison
# charts never draw a cross-entropy and a squared error on one axis.
LOSS_METRICS = {"mse": "mse", "softmax": "softmax_ce"}
LINEAGE_TAGS = (TAG_KIND, c.SPLIT_ID, c.DATA_HASH, TAG_CODE_VERSION, TAG_DEVICE, TAG_TRAIN_SECONDS)

# What a scoring process needs at run time: numpy/pandas/torch and mlflow itself. Listed by hand,
# because MLflow's inference imports the model and guesses (slow, and wrong for this project).
PIP_REQUIREMENTS = ("mlflow==3.17.2", "torch==2.13.0", "numpy>=2.4", "pandas>=3.1")

FINISHED_AT = "finished_at"              # history key: wall-clock end of an epoch (models/training_loop.py)

_FLUENT_LOCK = threading.RLock()
_BAD_KEY = re.compile(r"[^\w\-. /:]")     # characters MLflow refuses in param/metric names


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the checkout when there is one, else the installed package version."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "lensflow " + version("lensflow")
    except PackageNotFoundError:
        return "unknown"


def describe_device(device) -> str:
    """'cuda:0' -> 'cuda:0 (NVIDIA H100 80GB HBM3)', 'cpu' -> 'cpu (AMD EPYC, 2 cores)': what trained it."""
    name = str(device)
    if name.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return f"{name} ({torch.cuda.get_device_name(torch.device(name))})"
        return name
    if name == "cpu":
        model = ""
        try:
            with open("/proc/cpuinfo") as fh:
                model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
        except OSError:
            pass
        import platform

        return f"cpu ({model or platform.machine()}, {os.cpu_count()} cores)"
    return name


@dataclass(frozen=True)
class Lineage:
    """Where a trained model comes from: split, data snapshot, code, device and training time."""

    kind: str
    split_id: str
    data_hash: str
    device: str = "cpu"
    train_seconds: float = float("nan")
    code_version: str = dataclasses.field(default_factory=code_version)

    def tags(self) -> dict[str, str]:
        """Lineage as MLflow tags (runs and model versions carry the same ones)."""
        return {TAG_KIND: self.kind, c.SPLIT_ID: self.split_id, c.DATA_HASH: self.data_hash,
                TAG_CODE_VERSION: self.code_version, TAG_DEVICE: self.device,
                TAG_TRAIN_SECONDS: f"{self.train_seconds:.3f}"}


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
    import uuid

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
    from mlflow.tracking._tracking_service import utils as tracking_utils

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


def flat_params(config) -> dict[str, str]:
    """A config as string parameters: a model config as its kind and flat settings (the keys `--dot-config` /
    `--nn-config` take, only those its model uses); any other dataclass or mapping flattened as `a.b`."""
    from models import config as model_configs

    if isinstance(config, model_configs.DotConfig | model_configs.NNConfig):
        data = {"kind": config.kind, **model_configs.flat(config)}
    else:
        data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, Mapping):
            if not value and prefix:
                out[prefix] = "{}"
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[metric_key(prefix)] = str(value)[:6000]  # MLflow's param value limit

    walk("", data)
    return out


def loss_metric(loss: str) -> str:
    """The metric name of a config's loss: 'mse' -> 'mse', 'softmax' -> 'softmax_ce'."""
    return LOSS_METRICS.get(loss, metric_key(loss))


def step_metrics(history, now_ms: int, loss: str = "mse") -> list[Metric]:
    """Per-epoch history as metric steps (step = epoch), at each epoch's own wall-clock time.

    train_loss/valid_loss are named by the loss they measure (train_mse, valid_softmax_ce, ...), the
    epoch's duration is `epoch_seconds`; an epoch without `finished_at` (an older model) gets `now_ms`.
    """
    frame = plots.history_frame(history)
    name = loss_metric(loss)
    renamed = {"train_loss": f"train_{name}", "valid_loss": f"valid_{name}", "seconds": "epoch_seconds"}
    stamps = frame[FINISHED_AT] if FINISHED_AT in frame.columns else pd.Series([None] * len(frame))
    rows = []
    for col in frame.columns:
        if col in ("epoch", FINISHED_AT) or not pd.api.types.is_numeric_dtype(frame[col]):
            continue
        for epoch, value, stamp in zip(frame["epoch"], frame[col], stamps):
            if value is not None and math.isfinite(float(value)):
                at = int(float(stamp) * 1000) if stamp is not None and math.isfinite(float(stamp)) else now_ms
                rows.append(Metric(metric_key(renamed.get(col, col)), float(value), at, int(epoch)))
    return rows


def fit_started_ms(history) -> int | None:
    """Wall-clock start of the fit in ms (first epoch's end minus its duration), None when not recorded."""
    first = list(history or [])[:1]
    if not first or first[0].get(FINISHED_AT) is None:
        return None
    return int((float(first[0][FINISHED_AT]) - float(first[0].get("seconds") or 0.0)) * 1000)


def final_metrics(metrics: Mapping[str, float], now_ms: int) -> list[Metric]:
    """Final rating/ranking metrics (non-finite values are left out: MLflow cannot plot them)."""
    return [Metric(metric_key(k), float(v), now_ms, 0) for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))]


def log_training(paths: Paths, recommender, config, metrics: Mapping[str, float], history,
                 lineage: Lineage, *, movies: pd.DataFrame | None = None, train: pd.DataFrame | None = None,
                 experiment: str = EXPERIMENT, run_name: str | None = None,
                 tags: Mapping[str, str] | None = None) -> str:
    """Log one training as one finished MLflow run (params, step metrics, tags, plots, pyfunc model); its id.

    The run starts when the fit started (from the history's epoch times), so its duration covers the fit.
    `movies` (item_id, title) labels the pictures, `train` (user_id, item_id) gives rating counts and the
    model's input example; `tags` are extra run tags (a training fingerprint, the Prefect flow run).
    """
    cl = client(paths)
    exp = experiment_id(paths, experiment, cl)
    loss = config.loss.name
    started = fit_started_ms(history)
    run = cl.create_run(exp, start_time=started,
                        run_name=run_name or f"{lineage.kind}-{loss}-{time.strftime('%Y%m%d-%H%M%S')}",
                        tags={**{k: str(v) for k, v in (tags or {}).items()}, **lineage.tags()})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        _log_batched(cl, run_id, params=[Param(k, v) for k, v in flat_params(config).items()],
                     metrics=step_metrics(history, now, loss) + final_metrics(metrics, now))
        with durable.scratch_dir(paths, "lensflow-plots-") as tmp:
            write_pictures(Path(tmp), recommender, history, movies, train)
            cl.log_artifacts(run_id, tmp, "plots")
        info = log_pyfunc(paths, run_id, recommender, train)
        cl.log_batch(run_id, tags=[RunTag(TAG_MODEL_ID, info.model_id), RunTag(TAG_MODEL_URI, info.model_uri)])
    except BaseException:
        cl.set_terminated(run_id, "FAILED")
        raise
    cl.set_terminated(run_id, "FINISHED")
    return run_id


def _log_batched(cl: MlflowClient, run_id: str, params: list[Param], metrics: list[Metric]) -> None:
    # MLflow caps one log_batch at 100 params and 1000 entities in total
    for i in range(0, max(len(params), 1), 100):
        chunk = params[i:i + 100]
        cl.log_batch(run_id, params=chunk, metrics=metrics[:1000 - len(chunk)] if i == 0 else [])
    rest = metrics[1000 - min(len(params), 100):]
    for i in range(0, len(rest), 1000):
        cl.log_batch(run_id, metrics=rest[i:i + 1000])


def write_pictures(folder: Path, recommender, history, movies: pd.DataFrame | None,
                   train: pd.DataFrame | None) -> list[Path]:
    """Loss curves, the item-embedding PCA and the item-bias table/chart (when the model has biases).

    Each picture is titled with the model and its loss; the bias chart says what a bias means under
    that loss (a rating offset under MSE, popularity under softmax) and shows each item's rating count.
    """
    config = getattr(recommender, "config", None)
    kind, loss = getattr(config, "kind", ""), getattr(getattr(config, "loss", None), "name", "")
    model = f"{kind} ({loss})" if kind and loss else kind
    written = [plots.loss_curves(history, folder / "loss_curves.png", model=model, loss=loss)]
    titles = dict(zip(movies[c.ITEM_ID].astype(int), movies[c.TITLE])) if movies is not None else {}
    counts = train[c.ITEM_ID].value_counts().to_dict() if train is not None else {}
    item_ids, matrix = recommender.item_embeddings()
    item_ids, matrix = np.asarray(item_ids), np.asarray(matrix)
    if len(item_ids) >= 2:
        written.append(plots.embedding_pca(item_ids, matrix, titles, counts, folder / "item_embeddings_pca.png",
                                           model=model))
    biases = item_biases(recommender)
    if biases is not None:
        table = plots.bias_table(*biases, titles, counts)
        table.to_csv(folder / "item_bias.csv", index=False)
        (folder / "item_bias.md").write_text(plots.bias_markdown(table))
        n_rated = np.array([counts.get(int(i), 0) for i in biases[0]])
        rho = plots.popularity_correlation(biases[1], n_rated) if counts else None
        written += [folder / "item_bias.csv", folder / "item_bias.md",
                    plots.bias_chart(table, folder / "item_bias.png", loss=loss or "mse", model=model,
                                     correlation=rho)]
    return written


def item_biases(recommender) -> tuple[np.ndarray, np.ndarray] | None:
    """(item_ids, learned item bias) for models that have one (dot_bias), else None."""
    getter = getattr(recommender, "item_biases", None)
    if getter is not None:
        got = getter()
        return None if got is None else (np.asarray(got[0]), np.asarray(got[1], dtype=np.float64))
    # DotProductBias keeps item biases in an embedding whose row 0 is the "unknown" item
    bias = getattr(getattr(recommender, "model", None), "item_bias", None)
    if bias is None:
        return None
    return np.asarray(recommender.item_ids), bias.weight[1:, 0].detach().float().cpu().numpy().astype(np.float64)


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


def logged_model_name(config) -> str:
    """Name of the logged model in the run: 'lensflow-dot_bias-softmax' (registered name plus loss)."""
    kind, loss = getattr(config, "kind", "model"), getattr(getattr(config, "loss", None), "name", "")
    return metric_key(f"{c.registered_model_name(kind)}-{loss}" if loss else c.registered_model_name(kind))


def run_url(tracking_uri: str, experiment: str, run_id: str) -> str:
    """The run's page in the MLflow UI: on the tracking server, or where `lensflow mlflow-ui` serves it."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def input_example(train: pd.DataFrame | None) -> pd.DataFrame | None:
    """Two real (user, item) pairs from the training data, as the model's input example."""
    if train is None or len(train) == 0:
        return None
    rows = train[[c.USER_ID, c.ITEM_ID]].head(2)
    return pd.DataFrame({c.USER_ID: rows[c.USER_ID].astype("int64").to_numpy(),
                         c.ITEM_ID: rows[c.ITEM_ID].astype("int64").to_numpy()})


def log_pyfunc(paths: Paths, run_id: str, recommender, train: pd.DataFrame | None = None):
    """Log the Recommender as a self-contained pyfunc model in the run; MLflow's ModelInfo.

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
                name=logged_model_name(getattr(recommender, "config", None)),
                python_model=str(PYFUNC_FILE),
                artifacts=artifacts,
                code_paths=[str(MODELS_PACKAGE)],
                model_config=pyfunc_model_config(),
                signature=pyfunc_signature(),
                input_example=input_example(train),
                pip_requirements=list(PIP_REQUIREMENTS),
            )
