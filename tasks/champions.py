"""What the pipeline decides between steps: is this model already trained, which champion serves,
is the live publication already up to date. Plain functions over the registry and publication store.
"""

from __future__ import annotations

import hashlib
import json
import math

from tasks import contract as c
from tasks import publish as pub
from tasks import registry
from tasks import tracking as t
from tasks.settings import Paths

TAG_FINGERPRINT = "training_fingerprint"  # run tag: hash of kind, config, split, data and code


def fingerprint(config_dict: dict, split_id: str, data_hash: str, code_version: str | None = None) -> str:
    """Stable id of one training's inputs: the same fingerprint means the same model would come out."""
    payload = {"config": config_dict, "split_id": split_id, "data_hash": data_hash,
               "code": code_version or t.code_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_trained(paths: Paths, kind: str, fp: str) -> registry.ModelRef | None:
    """The registered version whose run has this fingerprint, if one exists (newest first)."""
    cl = t.client(paths)
    exp = cl.get_experiment_by_name(t.EXPERIMENT)
    if exp is None:
        return None
    runs = cl.search_runs([exp.experiment_id], filter_string=f"tags.{TAG_FINGERPRINT} = '{_quote(fp)}' "
                          f"and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                          max_results=5)
    name = c.registered_model_name(kind)
    for run in runs:
        versions = cl.search_model_versions(f"name = '{_quote(name)}' and run_id = '{_quote(run.info.run_id)}'")
        # A version without a promotion decision was registered by a run that died before promoting it:
        # reusing it would skip the comparison with the champion for good, so train again instead.
        versions = [v for v in versions if registry.TAG_DECISION in (v.tags or {})]
        if versions:
            return registry.resolve(paths, kind, str(max(int(v.version) for v in versions)))
    return None


def _quote(value: str) -> str:
    """MLflow filter strings have no bound parameters: allow only the characters our ids use."""
    if not all(ch.isalnum() or ch in "-_." for ch in value):
        raise ValueError(f"refusing to put {value!r} into an MLflow filter string")
    return value


def run_metrics(paths: Paths, run_id: str) -> dict[str, float]:
    """Final metrics of a run (finite values only)."""
    data = t.client(paths).get_run(run_id).data.metrics
    return {k: float(v) for k, v in data.items() if v is not None and math.isfinite(v)}


def load_champions(paths: Paths, kinds, alias: str = c.ALIAS_CHAMPION, device=None) -> list[tuple]:
    """[(Recommender, ModelRef, metrics)] for each kind that has a version under `alias`."""
    out = []
    for kind in kinds:
        try:
            rec, ref = registry.load_for_scoring(paths, kind, alias, device=device)
        except LookupError:
            continue
        out.append((rec, ref, run_metrics(paths, ref.run_id)))
    return out


def order_for_publication(models: list[tuple], metric: str, prefer: str | None = None) -> list[tuple]:
    """Champions ordered so the first one serves recommendations: `prefer`'s kind, else the best by `metric`."""
    if not models:
        raise LookupError("no champion model in the registry: train and register one first")
    key = t.metric_key(metric)
    lower = registry.lower_is_better(metric)

    def rank(entry):
        rec, ref, metrics = entry
        if prefer is not None:
            return (0 if rec.config.kind == prefer else 1, 0.0)
        value = metrics.get(f"valid_{key}", metrics.get(f"test_{key}"))
        if value is None:
            return (1, 0.0)
        return (0, value if lower else -value)

    ordered = sorted(models, key=rank)
    if prefer is not None and ordered[0][0].config.kind != prefer:
        raise LookupError(f"no '{prefer}' model under the requested alias")
    return ordered


def live_publication_matches(paths: Paths, refs, data_hash: str) -> str | None:
    """The live publication id if it was made from exactly these model versions and this data, else None."""
    live = pub.current(paths)
    if live is None or served_publication(paths) != live:
        return None  # also when a crash left CURRENT flipped but the warehouse not rebuilt: publish again
    record_file = paths.publications / live / pub.RECORD_FILE
    if not record_file.is_file():
        return None
    record = json.loads(record_file.read_text())
    wanted = {(r.name, str(r.version)) for r in refs}
    have = {(record.get(c.MODEL_NAME), str(record.get(c.MODEL_VERSION))),
            (record.get(c.SIMILARITY_MODEL_NAME), str(record.get(c.SIMILARITY_MODEL_VERSION)))}
    first = (refs[0].name, str(refs[0].version)) if refs else None
    same_models = have <= wanted and first == (record.get(c.MODEL_NAME), str(record.get(c.MODEL_VERSION)))
    return live if same_models and record.get(c.DATA_HASH) == data_hash else None


def served_publication(paths: Paths) -> str | None:
    """The publication id the live warehouse file serves (one id in both tables), or None."""
    import duckdb

    from tasks import sql, warehouse

    if not paths.warehouse.is_file():
        return None
    con = warehouse.connect_readonly(paths)
    try:
        rows = sql.rows(con, "query_live_publication")
    except duckdb.CatalogException:  # built before the first publish: no published tables
        return None
    finally:
        con.close()
    ids = {row[1] for row in rows}
    return ids.pop() if len(ids) == 1 else None
