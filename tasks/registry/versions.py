"""MLflow model registry: one registered model per kind, `candidate`/`champion` aliases, promotion on
evidence, manual override, and loading a version for scoring with its lineage."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from tasks.core import contract as c
from tasks.core import durable
from tasks.learning import promotion
from tasks.registry import tracking as t
from tasks.core.errors import ConfigError, NotFound
from tasks.core.faults import maybe_crash
from tasks.registry.model_ref import ModelRef
from tasks.core import settings
from tasks.core.settings import Paths

# How each metric compares; anything not listed is higher-is-better (ndcg, precision, recall, map, hit rate).
LOWER_IS_BETTER = frozenset({"rmse", "mae", "loss", "gini"})
SPLIT_PREFIXES = ("valid_", "test_")   # record_training logs metrics per split part: valid_rmse, test_ndcg_at_10

TAG_DECISION = "promotion.decision"   # promoted | kept | refused | manual
TAG_REASON = "promotion.reason"
TAG_METRIC = "promotion.metric"
TAG_BASELINE = "promotion.baseline"   # the floor's value of the metric on the same data
TAG_BASELINE_NAME = "promotion.baseline_name"   # which floor: popularity | bias_baseline (tasks.learning.promotion)
PROMOTED, KEPT, REFUSED, MANUAL = "promoted", "kept", "refused", "manual"


@dataclass(frozen=True)
class Decision:
    """Outcome of a promotion attempt and why."""

    name: str
    version: str
    promoted: bool
    outcome: str                       # promoted | kept | refused | manual
    reason: str
    metric: str | None = None
    value: float | None = None
    champion_version: str | None = None
    champion_value: float | None = None
    baseline_value: float | None = None     # the floor on the same validation data (popularity, bias baseline)
    baseline_name: str = promotion.FLOOR_POPULARITY


def lower_is_better(metric: str) -> bool:
    """True for error metrics (rmse, mae, ...), False for ranking metrics (ndcg@10, ...)."""
    base = _bare(metric)
    return base in LOWER_IS_BETTER or base.split("_")[0] in LOWER_IS_BETTER


def _bare(metric: str) -> str:
    """'valid_ndcg_at_10' -> 'ndcg_at_10': the metric without its split-part prefix."""
    key = t.metric_key(metric).lower()
    for prefix in SPLIT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def register(paths: Paths, run_id: str, kind: str | None = None, *, alias: str = c.ALIAS_CANDIDATE,
             tags: Mapping[str, str] | None = None) -> str:
    """Register the run's pyfunc model as a new version of `lensflow-<kind>`, alias it `alias` (`candidate`)."""
    cl = t.client(paths)
    run = cl.get_run(run_id)
    tags = run.data.tags
    kind = kind or tags.get(t.TAG_KIND)
    if not kind:
        raise ValueError(f"run {run_id} has no '{t.TAG_KIND}' tag; pass kind")
    model_id = tags.get(t.TAG_MODEL_ID)
    if not model_id:
        raise ValueError(f"run {run_id} has no logged model (tag '{t.TAG_MODEL_ID}'); log it with log_training")
    name = c.registered_model_name(kind)
    try:
        cl.create_registered_model(name, description=f"lensflow {kind} recommender (pyfunc: ratings and top-k)")
    except MlflowException as e:
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    lineage = {k: tags[k] for k in t.LINEAGE_TAGS if k in tags}
    # MLflow's SQL registry looks the logged model up through the *global* tracking URI (a TODO in
    # mlflow/store/model_registry/sqlalchemy_store.py), so scope it to ours for this one call.
    with t.using_tracking_uri(paths.mlflow_tracking_uri):
        mv = cl.create_model_version(name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id,
                                     tags={**lineage, **dict(tags or {}), "run_id": run_id},
                                     description=f"trained in run {run_id} on split {lineage.get(c.SPLIT_ID)}")
    cl.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def find_by_tag(paths: Paths, kind: str, tag: str, value: str, *, decided: bool = True) -> ModelRef | None:
    """The newest version of `kind` whose finished run has tags.<tag> = value, or None.

    decided: only versions with a promotion decision (trainings); serving fits are never promoted.
    """
    cl = t.client(paths)
    exp = cl.get_experiment_by_name(t.EXPERIMENT)
    if exp is None:
        return None
    runs = cl.search_runs([exp.experiment_id], filter_string=f"tags.{_quote(tag)} = '{_quote(value)}' "
                          f"and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                          max_results=5)
    name = c.registered_model_name(kind)
    for run in runs:
        versions = cl.search_model_versions(f"name = '{_quote(name)}' and run_id = '{_quote(run.info.run_id)}'")
        # A version without a promotion decision was registered by a run that died before promoting it:
        # reusing it would skip the comparison with the champion for good, so train again instead.
        versions = [v for v in versions if TAG_DECISION in (v.tags or {}) or not decided]
        if versions:
            return resolve(paths, kind, str(max(int(v.version) for v in versions)))
    return None


TAG_REUSED_BY = "prefect.reused_by"   # version tag prefix: prefect.reused_by.<flow run id> = "<UTC time> <run name>"
REUSE_MARKS_KEPT = 20                 # the newest reuse marks kept on a version (one per reusing flow run)


def mark_reused(paths: Paths, kind: str, version: str, flow_run_id: str, flow_run_name: str = "") -> None:
    """Record on a version that the training flow run `flow_run_id` reused it instead of training again.

    One tag per flow run (`prefect.reused_by.<id>`), so flow runs reusing one version at the same time
    never overwrite each other; only the newest REUSE_MARKS_KEPT stay (a mark is read right after its run).
    """
    from datetime import datetime, timezone

    cl = t.client(paths)
    name = c.registered_model_name(kind)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cl.set_model_version_tag(name, str(version), f"{TAG_REUSED_BY}.{_quote(flow_run_id)}",
                             f"{stamp} {flow_run_name}".strip())
    marks = sorted((value, key) for key, value in (cl.get_model_version(name, str(version)).tags or {}).items()
                   if key.startswith(TAG_REUSED_BY + "."))
    for _, key in marks[:-REUSE_MARKS_KEPT]:
        try:
            cl.delete_model_version_tag(name, str(version), key)
        except MlflowException:  # another run pruned it first
            pass


def training_of_flow_run(paths: Paths, kind: str, flow_run_id: str) -> tuple[ModelRef, bool] | None:
    """(version, reused) a training flow run left for `kind`, found by its Prefect flow run id; None if none.

    A run that trained has its id on its MLflow run (tags.prefect.flow_run_id); a run that reused an
    identical training left its mark on the version it reused (`mark_reused`).
    """
    trained = find_by_tag(paths, kind, t.TAG_FLOW_RUN_ID, flow_run_id)
    if trained is not None:
        return trained, False
    name = c.registered_model_name(kind)
    try:
        found = t.client(paths).search_model_versions(
            f"name = '{_quote(name)}' and tags.`{TAG_REUSED_BY}.{_quote(flow_run_id)}` LIKE '%'")
    except MlflowException:  # no such registered model yet
        return None
    if not found:
        return None
    return resolve(paths, kind, str(max(int(v.version) for v in found))), True


def _quote(value: str) -> str:
    """MLflow filter strings have no bound parameters: allow only the characters our ids use."""
    if not all(ch.isalnum() or ch in "-_." for ch in value):
        raise ValueError(f"refusing to put {value!r} into an MLflow filter string")
    return value


def run_metrics(paths: Paths, run_id: str) -> dict[str, float]:
    """Final metrics of a run (finite values only)."""
    data = t.client(paths).get_run(run_id).data.metrics
    return {k: float(v) for k, v in data.items() if v is not None and math.isfinite(v)}


def version_metric(paths: Paths, name: str, version: str, metric: str) -> float | None:
    """The metric logged by the run behind a version (None when absent or not finite)."""
    cl = t.client(paths)
    mv = cl.get_model_version(name, version)
    value = cl.get_run(mv.run_id).data.metrics.get(t.metric_key(metric))
    return value if value is not None and math.isfinite(value) else None


def champion_version(paths: Paths, kind: str) -> str | None:
    """The version the `champion` alias points at, or None."""
    try:
        return str(t.client(paths).get_model_version_by_alias(c.registered_model_name(kind), c.ALIAS_CHAMPION).version)
    except MlflowException:
        return None


def promote_if_better(paths: Paths, kind: str, version: str, metric: str | None = None, *,
                      rescore: Callable[[object], Mapping[str, float]] | None = None,
                      baseline: float | None = None, baseline_name: str | None = None) -> Decision:
    """Move `champion` to `version` only if it beats its floor and the champion on the same validation data.

    metric: the kind's job metric unless given (tasks.learning.promotion). `baseline`: the floor's value of `metric` on
    the same validation data (popularity for a ranking metric, the bias baseline for a rating one,
    `tasks.learning.promotion.floor_metrics`); a version that does not beat it is refused whatever the champion. Same data = same split id and data hash tags. When they differ the champion is re-scored with
    `rescore(champion_recommender)` (metrics on the newcomer's validation data) if given; otherwise the
    comparison is refused. Ties keep the champion. The decision is recorded on the version.
    """
    metric = metric or "valid_" + promotion.PROMOTION_METRICS[kind]
    floor = baseline_name or promotion.floor_name(_bare(metric))
    cl = t.client(paths)
    name = c.registered_model_name(kind)
    version = str(version)
    new = cl.get_model_version(name, version)
    value = version_metric(paths, name, version, metric)
    champ = champion_version(paths, kind)
    better = "lower" if lower_is_better(metric) else "higher"

    def decide(outcome: str, reason: str, champ_value: float | None = None) -> Decision:
        d = Decision(name, version, outcome == PROMOTED, outcome, reason, metric, value, champ, champ_value,
                     baseline, floor)
        _record(cl, d)
        return d

    if champ == version:
        return decide(KEPT, f"version {version} already is the champion")
    if value is None:
        return decide(REFUSED, f"version {version} has no finite '{metric}' metric to compare")
    if baseline is not None and math.isfinite(baseline):
        if not (value < baseline if better == "lower" else value > baseline):
            return decide(REFUSED, f"{metric} {value:.4f} does not beat the {promotion.FLOOR_NAMES[floor]} {baseline:.4f} "
                                   f"on the same validation data ({better} is better): registered, never champion")
    if champ is None:
        return decide(PROMOTED, f"no champion yet; first version with {metric}={value:.4f}")
    old = cl.get_model_version(name, champ)
    same = all(old.tags.get(k) == new.tags.get(k) for k in (c.SPLIT_ID, c.DATA_HASH))
    if same:
        champ_value = version_metric(paths, name, champ, metric)
        basis = f"same split {new.tags.get(c.SPLIT_ID)} and data {new.tags.get(c.DATA_HASH)}"
    elif rescore is not None:
        recommender, _ = load_for_scoring(paths, kind, champ)
        scores = {t.metric_key(k).lower(): v for k, v in dict(rescore(recommender)).items()}
        champ_value = scores.get(t.metric_key(metric).lower(), scores.get(_bare(metric)))
        champ_value = float(champ_value) if champ_value is not None and math.isfinite(champ_value) else None
        basis = f"champion re-scored on split {new.tags.get(c.SPLIT_ID)} / data {new.tags.get(c.DATA_HASH)}"
    else:
        return decide(REFUSED, f"not comparable: champion v{champ} was evaluated on split "
                               f"{old.tags.get(c.SPLIT_ID)} / data {old.tags.get(c.DATA_HASH)}, v{version} on "
                               f"split {new.tags.get(c.SPLIT_ID)} / data {new.tags.get(c.DATA_HASH)}; pass "
                               f"rescore= or use promote() to override")
    if champ_value is None:
        return decide(PROMOTED, f"champion v{champ} has no finite '{metric}'; v{version} has {value:.4f} ({basis})")
    wins = value < champ_value if better == "lower" else value > champ_value
    verdict = "beats" if wins else "does not beat"
    reason = (f"{metric} {value:.4f} {verdict} champion v{champ} {champ_value:.4f} "
              f"({better} is better; {basis})")
    return decide(PROMOTED if wins else KEPT, reason, champ_value)


def promote(paths: Paths, kind: str, version: str, reason: str) -> Decision:
    """Operator override: make `version` the champion whatever its metrics, recording who-said-why."""
    if not reason or not reason.strip():
        raise ConfigError("promote needs a reason (--reason \"...\"): it is recorded on the version")
    name = c.registered_model_name(kind)
    resolve(paths, kind, str(version))  # NotFound for an unknown version
    cl = t.client(paths)
    d = Decision(name, str(version), True, MANUAL, f"manual override: {reason.strip()}",
                 champion_version=champion_version(paths, kind))
    _record(cl, d)
    return d


def _record(cl, d: Decision) -> None:
    """Tags and description on the version; moves `champion` when promoted."""
    if d.outcome in (PROMOTED, MANUAL):
        cl.set_registered_model_alias(d.name, c.ALIAS_CHAMPION, d.version)
    tags = [(TAG_DECISION, d.outcome), (TAG_REASON, d.reason), (TAG_METRIC, d.metric or "")]
    if d.baseline_value is not None:
        tags += [(TAG_BASELINE, f"{d.baseline_value:.6f}"), (TAG_BASELINE_NAME, d.baseline_name)]
    for key, value in tags:
        cl.set_model_version_tag(d.name, d.version, key, value)
    mv = cl.get_model_version(d.name, d.version)
    head = (mv.description or "").split("\n\npromotion: ")[0]
    cl.update_model_version(d.name, d.version, description=f"{head}\n\npromotion: {d.outcome} — {d.reason}")


def resolve(paths: Paths, kind: str, alias_or_version: str = c.ALIAS_CHAMPION) -> ModelRef:
    """A version by alias ('champion', 'candidate') or number, with its lineage."""
    cl = t.client(paths)
    name = c.registered_model_name(kind)
    ref = str(alias_or_version)
    try:
        mv = cl.get_model_version(name, ref) if ref.isdigit() else cl.get_model_version_by_alias(name, ref)
    except MlflowException as e:
        known = sorted(int(v.version) for v in _versions(cl, name))
        have = f"versions: {', '.join(map(str, known))}" if known else "no versions registered yet"
        raise NotFound(f"no version '{ref}' of registered model {name} ({have}; "
                       f"store {paths.mlflow_tracking_uri})") from e
    return ModelRef(name, str(mv.version), f"models:/{name}/{mv.version}", mv.run_id,
                    mv.tags.get(c.SPLIT_ID, ""), mv.tags.get(c.DATA_HASH, ""))


def _versions(cl, name: str) -> list:
    """Every version of a registered model (none when the model is not registered)."""
    try:
        return list(cl.search_model_versions(f"name = '{_quote(name)}'"))
    except MlflowException:
        return []


def load_for_scoring(paths: Paths, kind: str, alias: str = c.ALIAS_CHAMPION, device=None):
    """(Recommender, ModelRef) of a version, read straight from its artifacts (no pyfunc layer)."""
    from models.recommender import Recommender

    ref = resolve(paths, kind, alias)
    cl = t.client(paths)
    mv = cl.get_model_version(ref.name, ref.version)
    # the SQLite registry does not hand model_id back; the source is models:/<model_id>
    model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]
    location = cl.get_logged_model(model_id).artifact_location
    with durable.scratch_dir(paths, "lensflow-load-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location.rstrip('/')}/artifacts/{t.RECOMMENDER_FILE}", dst_path=tmp,
            tracking_uri=paths.mlflow_tracking_uri)
        return Recommender.load(Path(local), device=settings.device(device)), ref


def pyfunc_uri(kind: str, alias_or_version: str = c.ALIAS_CHAMPION) -> str:
    """URI for `mlflow.pyfunc.load_model`: models:/lensflow-<kind>@champion or .../<version>."""
    ref = str(alias_or_version)
    name = c.registered_model_name(kind)
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def server_command(paths: Paths, port: int = 5000, host: str = "127.0.0.1", workers: int = 1) -> list[str]:
    """argv of `mlflow server` on the data home's store (what `lensflow mlflow-ui` runs).

    Artifacts are served by the server itself (`--artifacts-destination`): clients on any host upload
    and download them over HTTP, none needs the server's folder. One worker by default: SQLite takes
    one writer at a time, and each extra worker costs a Python process importing MLflow (the server's
    own default is 4).
    """
    import shutil
    import sys

    exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    return [exe, "server", "--backend-store-uri", f"sqlite:///{paths.mlflow_db}",
            "--artifacts-destination", str(paths.mlflow_artifacts), "--host", host, "--port", str(int(port)), "--workers", str(int(workers))]


@dataclass(frozen=True)
class Recorded:
    """What record_training did: the run, the new version and the promotion decision."""

    run_id: str
    version: str
    decision: Decision


def record_training(paths: Paths, result, data_hash: str, *, movies=None, train=None, metric: str | None = None,
                    rescore: Callable[[object], Mapping[str, float]] | None = None,
                    tags: Mapping[str, str] | None = None,
                    baseline: Mapping[str, float] | None = None, baseline_name: str | None = None) -> Recorded:
    """Log a `tasks.learning.training.TrainResult` as a run, register it (`candidate`) and promote it on evidence.

    Metrics are logged as valid_<name> and test_<name>; promotion compares valid_<metric> (test_<metric>
    when the split has no validation part). `rescore(champion) -> {metric: value}` on the newcomer's
    validation data lets a champion trained on another split be compared instead of refused; `tags`
    are extra run tags; `baseline` is the floor's metrics on the part promotion compares on (logged as
    <baseline_name>_<part>_<name>, e.g. popularity_valid_ndcg_at_10; the floor of `promote_if_better`).
    """
    kind = result.config.kind
    metric = metric or promotion.PROMOTION_METRICS[kind]
    baseline_name = baseline_name or promotion.floor_name(_bare(metric))
    part = "valid_" if result.valid_metrics else "test_"
    metrics = {**{f"test_{k}": v for k, v in result.metrics.items()},
               **{f"valid_{k}": v for k, v in (result.valid_metrics or {}).items()},
               **{f"{baseline_name}_{part}{k}": v for k, v in (baseline or {}).items()}}
    lineage = t.Lineage(kind, str(result.split_id or ""), data_hash, device=t.describe_device(result.device),
                        train_seconds=float(result.seconds))
    run_id = t.log_training(paths, result.recommender, result.config, metrics, result.history, lineage,
                            movies=movies, train=train, tags=tags)
    maybe_crash("train-after-log")
    version = register(paths, run_id, kind)
    maybe_crash("train-after-register")
    floor = (baseline or {}).get(_bare(metric))
    return Recorded(run_id, version, promote_if_better(paths, kind, version, part + _bare(metric), rescore=rescore,
                                                       baseline=floor, baseline_name=baseline_name))



# --- serving fits: the evaluated config refitted on every rating ---------------------------------------
TAG_SERVING_EVALUATED = "serving.evaluated_version"   # version tag: the evaluated version that justified it
TAG_SERVING_ROWS = "serving.rows"                     # ratings the serving fit was trained on


def record_serving(paths: Paths, recommender, evaluated: ModelRef, data_hash: str, *, rows: int, seconds: float,
                   device: str, train=None, movies=None, tags: Mapping[str, str] | None = None) -> ModelRef:
    """Log a serving fit as its own run, register it under the `serving` alias, linked to `evaluated`.

    Its split_id tag is the evaluated version's split (where the config was chosen and measured);
    TAG_SERVING_ROWS says how many ratings it was fitted on. It is never `candidate` nor `champion`.
    """
    kind = recommender.config.kind
    link = {TAG_SERVING_EVALUATED: str(evaluated.version), TAG_SERVING_ROWS: str(int(rows))}
    lineage = t.Lineage(kind, evaluated.split_id, data_hash, device=t.describe_device(device),
                        train_seconds=float(seconds))
    run_id = t.log_training(paths, recommender, recommender.config, {}, recommender.history, lineage,
                            movies=movies, train=train, tags={**dict(tags or {}), **link},
                            run_name=f"{kind}-serving-fit-of-v{evaluated.version}")
    version = register(paths, run_id, kind, alias=c.ALIAS_SERVING, tags=link)
    return resolve(paths, kind, version)


def use_for_serving(paths: Paths, kind: str, version: str, evaluated: ModelRef) -> ModelRef:
    """Point `serving` at an existing serving fit, its evaluated-version tag at `evaluated` (a reused fit)."""
    cl = t.client(paths)
    name = c.registered_model_name(kind)
    cl.set_model_version_tag(name, str(version), TAG_SERVING_EVALUATED, str(evaluated.version))
    cl.set_registered_model_alias(name, c.ALIAS_SERVING, str(version))
    return resolve(paths, kind, str(version))


def version_tags(paths: Paths, kind: str, version: str) -> dict[str, str]:
    """The tags of one registered version."""
    return dict(t.client(paths).get_model_version(c.registered_model_name(kind), str(version)).tags or {})
