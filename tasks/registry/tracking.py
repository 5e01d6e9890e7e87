"""MLflow tracking: one run per training with its config, per-epoch losses, metrics and lineage tags, the
pictures (tasks/registry/plots.py) and the pyfunc model (tasks/registry/pyfunc_logging.py).

The store and its client are tasks/registry/mlflow_store.py.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow.data
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models import config as model_configs
from tasks.core import contract as c
from tasks.core import durable
from tasks.core.settings import Paths
from tasks.registry.mlflow_store import EXPERIMENT, client, experiment_id, metric_key
from tasks.registry import plots
from tasks.registry.pyfunc_logging import log_pyfunc

REPO_ROOT = Path(__file__).resolve().parents[2]   # the checkout whose commit names the code version


# Tags on runs and model versions (lineage). Split id and data hash keep their contract names.
TAG_KIND = "model_kind"
TAG_CODE_VERSION = "code_version"
TAG_DEVICE = "device"
TAG_TRAIN_SECONDS = "train_seconds"
TAG_MODEL_ID = "logged_model_id"
TAG_MODEL_URI = "logged_model_uri"
TAG_FLOW_RUN_ID = "prefect.flow_run_id"   # the Prefect flow run that trained it (set by flows/, passed as a tag)
TAG_FLOW_RUN_NAME = "prefect.flow_run_name"
TAG_EVALUATED_SPLIT = "serving.evaluated_split_id"   # a serving fit's: the split its champion was chosen on
# MLflow's own run tags (its UI's Source and Created by columns); the run is created by the client, which sets none
SOURCE_TAGS = {"mlflow.source.type": "JOB", "mlflow.source.name": "lensflow"}
TAG_USER = "mlflow.user"
# A history's loss columns are logged under the name of the loss they measure, so MLflow's comparison
# charts never draw a cross-entropy and a squared error on one axis.
LOSS_METRICS = {"mse": "mse", "softmax": "softmax_ce"}
LINEAGE_TAGS = (TAG_KIND, c.SPLIT_ID, c.DATA_HASH, TAG_CODE_VERSION, TAG_DEVICE, TAG_TRAIN_SECONDS)
# A run's metric names are made here. MLflow's UI draws a run's charts (its *Model metrics* tab, and the chart view
# of the run list) in sections named by a metric's prefix up to its last `/`, the sections sorted by name
# (JavaScript's default sort: character codes), then one section "Model metrics" of the unprefixed metrics last
# (RunsChartsCardConfig.getBaseChartAndSectionConfigs in MLflow's UI). The prefixes are picked for that order: the
# metric the run is promoted on first, the loss curves, the floor it had to beat, the epoch times; the final
# test_/valid_ metrics keep their plain names (promotion, reports and the logged model read those).
JOB = "job/"                          # job/valid_ndcg_at_10, job/test_ndcg_at_10: the promotion metric once more
CURVES = "loss/"                      # loss/train_mse, loss/valid_softmax_ce: the per-epoch loss curves
FLOOR = "promotion_floor/"            # promotion_floor/popularity_valid_ndcg_at_10 (tasks.learning.promotion)
EPOCH_SECONDS = "time/epoch_seconds"
SECTIONS = (JOB, CURVES, FLOOR, "time/")   # in the order MLflow shows them (test_tracking checks it)
FINISHED_AT = "finished_at"              # history key: wall-clock end of an epoch (models/training_loop.py)


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
    try:
        return "lensflow " + metadata.version("lensflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def describe_device(device) -> str:
    """'cuda:0' -> 'cuda:0 (NVIDIA H100 80GB HBM3)', 'cpu' -> 'cpu (AMD EPYC, 2 cores)': what trained it."""
    name = str(device)
    if name.startswith("cuda"):
        import torch   # only to name a GPU: a CPU run's logging does not pay torch's import here

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
        """Lineage as MLflow tags (runs and model versions carry the same ones); no split id for a fit on every
        rating (a serving fit), which was not made from a split."""
        tags = {TAG_KIND: self.kind, c.SPLIT_ID: self.split_id, c.DATA_HASH: self.data_hash,
                TAG_CODE_VERSION: self.code_version, TAG_DEVICE: self.device,
                TAG_TRAIN_SECONDS: f"{self.train_seconds:.3f}"}
        return {k: v for k, v in tags.items() if v or k != c.SPLIT_ID}


def flat_params(config) -> dict[str, str]:
    """A config as string parameters: a model config as its kind and flat settings (the keys `--dot-config` /
    `--nn-config` take, only those its model uses); any other dataclass or mapping flattened as `a.b`."""
    if isinstance(config, model_configs.DotConfig | model_configs.NNConfig):
        data = {"kind": config.kind, "loss": config.loss.name, **model_configs.flat(config)}   # the NN's is fixed
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

    train_loss/valid_loss are named by the loss they measure (loss/train_mse, loss/valid_softmax_ce, ...), the
    epoch's duration is `time/epoch_seconds`; an epoch without `finished_at` (an older model) gets `now_ms`.
    """
    frame = plots.history_frame(history)
    name = loss_metric(loss)
    renamed = {"train_loss": f"{CURVES}train_{name}", "valid_loss": f"{CURVES}valid_{name}", "seconds": EPOCH_SECONDS}
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


def job_metrics(metrics: Mapping[str, float], metric: str | None) -> dict[str, float]:
    """The run's promotion metric (bare: 'rmse') on each part once more under JOB, so its charts come first:
    ({'valid_rmse': 0.9, 'test_rmse': 0.91, 'valid_mae': 0.7}, 'rmse')
    -> {'job/valid_rmse': 0.9, 'job/test_rmse': 0.91}."""
    if not metric:
        return {}
    return {f"{JOB}{part}{metric}": metrics[part + metric] for part in ("valid_", "test_") if part + metric in metrics}


def floor_metric(floor: str, key: str) -> str:
    """The run metric of a floor's value: ('popularity', 'valid_ndcg_at_10') ->
    'promotion_floor/popularity_valid_ndcg_at_10' (floors: tasks.learning.promotion)."""
    return f"{FLOOR}{floor}_{key}"


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
                 tags: Mapping[str, str] | None = None, model_name: str | None = None,
                 job_metric: str | None = None) -> str:
    """Log one training as one finished MLflow run (params, step metrics, tags, plots, pyfunc model); its id.

    The run starts when the fit started (from the history's epoch times), so its duration covers the fit.
    `movies` (item_id, title) labels the pictures, `train` (user_id, item_id) gives rating counts, the
    model's input example and the run's dataset; `tags` are extra run tags (a training fingerprint, the Prefect
    flow run); `model_name` names the logged model (default: the registered model's name). The final
    metrics are logged on the logged model too, so its page shows them. `job_metric` (bare: 'ndcg_at_10'), the
    metric the run is promoted on, is logged a second time under JOB (job_metrics: the first chart section),
    on the run only.
    """
    cl = client(paths)
    exp = experiment_id(paths, experiment, cl)
    loss = config.loss.name
    started = fit_started_ms(history)
    run = cl.create_run(exp, start_time=started,
                        run_name=run_name or f"{lineage.kind}-{loss}-{time.strftime('%Y%m%d-%H%M%S')}",
                        tags={**SOURCE_TAGS, TAG_USER: _user(), **{k: str(v) for k, v in (tags or {}).items()},
                              **lineage.tags()})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        _log_batched(cl, run_id, params=[Param(k, v) for k, v in flat_params(config).items()], metrics=[])
        if train is not None and len(train):
            _log_dataset(cl, run_id, train, lineage)
        with durable.scratch_dir(paths, "lensflow-plots-") as tmp:
            plots.write_pictures(Path(tmp), recommender, history, movies, train)
            cl.log_artifacts(run_id, tmp, "plots")
        # The model before the metrics: logging a model links the run's metrics of one step to it (the first
        # epoch's losses); linked here instead are each loss curve's last epoch and the final metrics.
        info = log_pyfunc(paths, run_id, recommender, train, name=model_name or c.registered_model_name(lineage.kind))
        steps = step_metrics(history, now, loss)
        last = {m.key: m for m in steps}   # each curve's last epoch
        linked = [Metric(m.key, m.value, m.timestamp, m.step, model_id=info.model_id)
                  for m in [*last.values(), *final_metrics(metrics, now)]]
        job = final_metrics(job_metrics(metrics, job_metric and metric_key(job_metric)), now)
        _log_batched(cl, run_id, params=[], metrics=[m for m in steps if last[m.key] is not m] + linked + job)
        cl.log_batch(run_id, tags=[RunTag(TAG_MODEL_ID, info.model_id), RunTag(TAG_MODEL_URI, info.model_uri)])
    except BaseException:
        cl.set_terminated(run_id, "FAILED")
        raise
    cl.set_terminated(run_id, "FINISHED")
    return run_id


def _user() -> str:
    """Who ran it (MLflow's Created by): the login name, or '' where there is none (a container)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _log_dataset(cl: MlflowClient, run_id: str, train: pd.DataFrame, lineage: Lineage) -> None:
    """The ratings the model was fitted on as the run's training dataset (named by split, or data for a serving fit)."""
    name = f"{lineage.split_id}/train" if lineage.split_id else f"all-ratings-{lineage.data_hash[:12]}"
    dataset = mlflow.data.from_pandas(train, name=name)
    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])]
    try:
        cl.log_inputs(run_id, datasets=inputs)
    except MlflowException:
        # Both kinds train on one split at once and log the same dataset. MLflow's store looks for it, then
        # inserts it, so of two runs racing, one fails on the store's unique key (an IntegrityError from
        # SQLite, a 500 through a server) and nothing of its call is kept. Asked again, it finds the winner's
        # row and links to it; any other failure fails again and is raised.
        cl.log_inputs(run_id, datasets=inputs)


def _log_batched(cl: MlflowClient, run_id: str, params: list[Param], metrics: list[Metric]) -> None:
    # MLflow caps one log_batch at 100 params and 1000 entities in total
    for i in range(0, max(len(params), 1), 100):
        chunk = params[i:i + 100]
        cl.log_batch(run_id, params=chunk, metrics=metrics[:1000 - len(chunk)] if i == 0 else [])
    rest = metrics[1000 - min(len(params), 100):]
    for i in range(0, len(rest), 1000):
        cl.log_batch(run_id, metrics=rest[i:i + 1000])


