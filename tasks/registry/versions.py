"""MLflow model registry: one registered model per kind, its versions and aliases (`candidate`, `champion`,
`serving`), finding a version by tag, and loading a version for scoring with its lineage.

Promotion is tasks/registry/promote.py; recording a training is tasks/registry/trainings.py."""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from tasks.core import contract as c
from tasks.core import durable
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tasks.registry import pyfunc_logging
from tasks.core.errors import NotFound
from tasks.registry.model_ref import ModelRef
from tasks.core.settings import Paths

TAG_DECISION = "promotion.decision"   # set on a version by tasks/registry/promote.py: promoted | kept | refused | manual
TAG_REASON = "promotion.reason"       # why, in one sentence (tasks/registry/promote.py)
TAG_SERVING_EVALUATED = "serving.evaluated_version"   # version tag: the evaluated version a serving fit refits
TAG_SERVING_ROWS = "serving.rows"                     # ratings the serving fit was trained on
TAG_SERVES = "serves"                                 # registered model tag: which version serves, and why
MODEL_VERSIONS_TAG = "mlflow.modelVersions"           # logged model tag: the registered versions made from it
# What a version carries of its run's tags: lineage, the Prefect flow run, and a serving fit's link
VERSION_TAGS_FROM_RUN = frozenset({*t.LINEAGE_TAGS, t.TAG_EVALUATED_SPLIT, t.TAG_FLOW_RUN_ID, t.TAG_FLOW_RUN_NAME,
                                   TAG_SERVING_EVALUATED, TAG_SERVING_ROWS})


def register(paths: Paths, run_id: str, kind: str | None = None, *, alias: str = c.ALIAS_CANDIDATE,
             tags: Mapping[str, str] | None = None, description: str | None = None) -> str:
    """Register the run's pyfunc model as a new version of `lensflow-<kind>`, alias it `alias` (`candidate`).

    The version carries the run's lineage and Prefect tags, `tags` and the run id; its logged model names it
    (`mlflow.modelVersions`, what the logged model's page lists as its registered versions)."""
    cl = mlflow_store.client(paths)
    run_tags = cl.get_run(run_id).data.tags
    kind = kind or run_tags.get(t.TAG_KIND)
    if not kind:
        raise ValueError(f"run {run_id} has no '{t.TAG_KIND}' tag; pass kind")
    model_id = run_tags.get(t.TAG_MODEL_ID)
    if not model_id:
        raise ValueError(f"run {run_id} has no logged model (tag '{t.TAG_MODEL_ID}'); log it with log_training")
    name = c.registered_model_name(kind)
    try:
        cl.create_registered_model(name, description=f"lensflow {kind} recommender (pyfunc: ratings and top-k)")
    except MlflowException as e:
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    carried = {k: v for k, v in run_tags.items() if k in VERSION_TAGS_FROM_RUN}
    split = run_tags.get(c.SPLIT_ID)
    # MLflow's SQL registry looks the logged model up through the *global* tracking URI (a TODO in
    # mlflow/store/model_registry/sqlalchemy_store.py), so scope it to ours for this one call.
    with mlflow_store.using_tracking_uri(paths.mlflow_tracking_uri):
        mv = cl.create_model_version(name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id,
                                     tags={**carried, **dict(tags or {}), "run_id": run_id},
                                     description=description or f"evaluated version: trained in run {run_id} "
                                                                f"on split {split}")
    listed = json.loads(cl.get_logged_model(model_id).tags.get(MODEL_VERSIONS_TAG) or "[]")
    cl.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(
        [*listed, {"name": name, "version": str(mv.version)}])})
    cl.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def find_by_tag(paths: Paths, kind: str, tag: str, value: str, *, decided: bool = True) -> ModelRef | None:
    """The newest version of `kind` whose finished run has tags.<tag> = value, or None.

    decided: only versions with a promotion decision (trainings); serving fits are never promoted.
    """
    cl = mlflow_store.client(paths)
    exp = cl.get_experiment_by_name(mlflow_store.EXPERIMENT)
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
    cl = mlflow_store.client(paths)
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
        found = mlflow_store.client(paths).search_model_versions(
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
    data = mlflow_store.client(paths).get_run(run_id).data.metrics
    return {k: float(v) for k, v in data.items() if v is not None and math.isfinite(v)}


def version_metric(paths: Paths, name: str, version: str, metric: str) -> float | None:
    """The metric logged by the run behind a version (None when absent or not finite)."""
    cl = mlflow_store.client(paths)
    mv = cl.get_model_version(name, version)
    value = cl.get_run(mv.run_id).data.metrics.get(mlflow_store.metric_key(metric))
    return value if value is not None and math.isfinite(value) else None


def champion_version(paths: Paths, kind: str) -> str | None:
    """The version the `champion` alias points at, or None."""
    try:
        return str(mlflow_store.client(paths).get_model_version_by_alias(c.registered_model_name(kind), c.ALIAS_CHAMPION).version)
    except MlflowException:
        return None


def resolve(paths: Paths, kind: str, alias_or_version: str = c.ALIAS_CHAMPION) -> ModelRef:
    """A version by alias ('champion', 'candidate') or number, with its lineage."""
    cl = mlflow_store.client(paths)
    name = c.registered_model_name(kind)
    ref = str(alias_or_version)
    try:
        mv = cl.get_model_version(name, ref) if ref.isdigit() else cl.get_model_version_by_alias(name, ref)
    except MlflowException as e:
        known = sorted(int(v.version) for v in _versions(cl, name))
        have = f"versions: {', '.join(map(str, known))}" if known else "no versions registered yet"
        raise NotFound(f"no version '{ref}' of registered model {name} ({have}; "
                       f"store {paths.mlflow_tracking_uri})") from e
    split = mv.tags.get(c.SPLIT_ID) or mv.tags.get(t.TAG_EVALUATED_SPLIT, "")   # a serving fit: its champion's split
    return ModelRef(name, str(mv.version), f"models:/{name}/{mv.version}", mv.run_id, split,
                    mv.tags.get(c.DATA_HASH, ""))


def _versions(cl, name: str) -> list:
    """Every version of a registered model (none when the model is not registered)."""
    try:
        return list(cl.search_model_versions(f"name = '{_quote(name)}'"))
    except MlflowException:
        return []


def load_for_scoring(paths: Paths, kind: str, alias: str = c.ALIAS_CHAMPION, device=None):
    """(Recommender, ModelRef) of a version, read straight from its artifacts (no pyfunc layer)."""
    from models.recommender import Recommender   # torch: ~1-2 s to import, paid only by what scores

    ref = resolve(paths, kind, alias)
    cl = mlflow_store.client(paths)
    mv = cl.get_model_version(ref.name, ref.version)
    # the SQLite registry does not hand model_id back; the source is models:/<model_id>
    model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]
    location = cl.get_logged_model(model_id).artifact_location
    with durable.scratch_dir(paths, "lensflow-load-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location.rstrip('/')}/artifacts/{pyfunc_logging.RECOMMENDER_FILE}", dst_path=tmp,
            tracking_uri=paths.mlflow_tracking_uri)
        return Recommender.load(Path(local), device=device), ref


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
    exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    return [exe, "server", "--backend-store-uri", f"sqlite:///{paths.mlflow_db}",
            "--artifacts-destination", str(paths.mlflow_artifacts), "--host", host, "--port", str(int(port)), "--workers", str(int(workers))]


def version_tags(paths: Paths, kind: str, version: str) -> dict[str, str]:
    """The tags of one registered version."""
    return dict(mlflow_store.client(paths).get_model_version(c.registered_model_name(kind), str(version)).tags or {})


def refits(tags: Mapping[str, str], champion: str) -> bool:
    """Whether the version with these tags is the serving fit of version `champion` (what serves with it)."""
    return tags.get(TAG_SERVING_EVALUATED) == str(champion)


def describe_model(paths: Paths, kind: str) -> None:
    """Say on the registered model which version serves `kind` and why (its `serves` tag, shown in the model
    list, and its description), from where `serving`, `champion` and `candidate` point now."""
    cl = mlflow_store.client(paths)
    name = c.registered_model_name(kind)
    aliases = {alias: str(v) for alias, v in cl.get_registered_model(name).aliases.items()}
    tags = {alias: cl.get_model_version(name, v).tags or {} for alias, v in aliases.items()}
    champ, fit, newest = (aliases.get(a) for a in (c.ALIAS_CHAMPION, c.ALIAS_SERVING, c.ALIAS_CANDIDATE))
    why = {a: f"{tags[a].get(TAG_DECISION, 'undecided')} — {tags[a].get(TAG_REASON, '')}" for a in tags}
    if fit and champ and refits(tags[c.ALIAS_SERVING], champ):
        serves = (f"v{fit} (@serving): champion v{champ}'s config refit on all "
                  f"{int(tags[c.ALIAS_SERVING].get(TAG_SERVING_ROWS, 0)):,} ratings")
    elif champ:
        serves = f"v{champ} (@champion): no serving fit of it yet"
    elif newest:
        serves = f"no version yet: none has earned champion (v{newest} @candidate serves only where no kind has one)"
    else:
        serves = "nothing: no version yet"
    lines = [f"lensflow {kind} recommender (pyfunc: ratings and top-k). **Serves {serves}.**", ""]
    if champ:
        lines.append(f"- **champion v{champ}** (evaluated on split {tags[c.ALIAS_CHAMPION].get(c.SPLIT_ID, '-')}): "
                     f"{why[c.ALIAS_CHAMPION]}")
    if newest:
        lines.append(f"- **candidate v{newest}** (newest training that is not champion): {why[c.ALIAS_CANDIDATE]}")
    cl.set_registered_model_tag(name, TAG_SERVES, serves)
    cl.update_registered_model(name, description="\n".join(lines))
