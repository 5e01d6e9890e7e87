"""Which registered models serve a publication, and their serving fits.

Model choice stays on the split: `champion` is the evaluated version that won on validation data.
`fit_serving` then refits the champion's config on every rating (a version of its own under the
`serving` alias, tagged with the evaluated version); `load_champions(..., alias='serving')` serves that
fit where it belongs to the current champion and data, else the champion itself.
"""

from __future__ import annotations

from tasks import contract as c
from tasks import registry
from tasks import tracking as t
from tasks.errors import NotFound
from tasks.model_ref import ModelRef, ServingModel
from tasks.settings import Paths


def _champion(paths: Paths, kind: str) -> ModelRef | None:
    try:
        return registry.resolve(paths, kind, c.ALIAS_CHAMPION)
    except LookupError:
        return None


def serving_fit_of(paths: Paths, kind: str, champion: ModelRef, data_hash: str | None) -> ModelRef | None:
    """The `serving` version of `kind` if it is the serving fit of `champion` on `data_hash`, else None."""
    try:
        ref = registry.resolve(paths, kind, c.ALIAS_SERVING)
    except LookupError:
        return None
    tags = registry.version_tags(paths, kind, ref.version)
    if tags.get(registry.TAG_SERVING_EVALUATED) != champion.version:
        return None
    return ref if data_hash is None or ref.data_hash == data_hash else None


def load_champions(paths: Paths, kinds, alias: str = c.ALIAS_CHAMPION, device=None,
                   data_hash: str | None = None, load: bool = True) -> list[ServingModel]:
    """A ServingModel for each kind that has a version under `alias` (kinds without one are left out).

    alias 'serving': per kind with a champion, its serving fit on `data_hash` when there is one, else the
    champion; when no kind has a champion (every version refused by the popularity floor), each kind's
    `candidate` is served, marked alias 'candidate'. Metrics are always the evaluated version's.
    load=False makes the same choice without loading any model (recommender None).
    """
    if alias != c.ALIAS_SERVING:
        found = [m for kind in kinds if (m := _load(paths, kind, alias, device, load=load)) is not None]
        if not found and alias != c.ALIAS_CHAMPION:  # a version or alias asked for by name: say what exists
            raise NotFound("; ".join(_missing(paths, kind, alias) for kind in kinds))
        return found
    out = []
    for kind in kinds:
        champ = _champion(paths, kind)
        if champ is None:
            continue
        fit = serving_fit_of(paths, kind, champ, data_hash)
        if fit is None:
            out.append(_load(paths, kind, champ.version, device, label=c.ALIAS_CHAMPION, load=load))
        else:
            rec = registry.load_for_scoring(paths, kind, fit.version, device=device)[0] if load else None
            out.append(ServingModel(rec, fit, registry.run_metrics(paths, champ.run_id), champ, c.ALIAS_SERVING))
    if out:
        return out
    return [m for kind in kinds if (m := _load(paths, kind, c.ALIAS_CANDIDATE, device, load=load)) is not None]


def _missing(paths: Paths, kind: str, alias: str) -> str:
    """registry.resolve's one line on why `alias` names no version of `kind` (its versions and store)."""
    try:
        registry.resolve(paths, kind, alias)
    except LookupError as e:
        return str(e)
    return f"{c.registered_model_name(kind)} {alias}: not loadable"


def _load(paths: Paths, kind: str, alias: str, device, label: str | None = None,
          load: bool = True) -> ServingModel | None:
    try:
        rec, ref = registry.load_for_scoring(paths, kind, alias, device=device) if load else \
            (None, registry.resolve(paths, kind, alias))
    except LookupError:
        return None
    return ServingModel(rec, ref, registry.run_metrics(paths, ref.run_id), None, label or alias)


def _rank(kind: str, metrics: dict, metric: str, prefer: str | None):
    if prefer is not None:
        return (0 if kind == prefer else 1, 0.0)
    key = t.metric_key(metric)
    value = metrics.get(f"valid_{key}", metrics.get(f"test_{key}"))
    if value is None:
        return (1, 0.0)
    return (0, value if registry.lower_is_better(metric) else -value)


def order_for_publication(models: list[ServingModel], metric: str, prefer: str | None = None) -> list[ServingModel]:
    """Champions ordered so the first one serves recommendations: `prefer`'s kind, else the best by `metric`."""
    if not models:
        raise LookupError("no champion model in the registry: train and register one first")
    ordered = sorted(models, key=lambda m: _rank(m.kind, m.metrics, metric, prefer))
    if prefer is not None and ordered[0].kind != prefer:
        raise LookupError(f"no '{prefer}' model under the requested alias")
    return ordered


def serving_kinds(paths: Paths, kinds, metric: str, prefer: str | None = None) -> list[str]:
    """The kinds a publication will use (recommendations first, then the similar-items dot model): the ones
    that need a serving fit. Kinds without a champion are never fitted for serving."""
    ranked = [(kind, registry.run_metrics(paths, ref.run_id)) for kind in kinds
              if (ref := _champion(paths, kind)) is not None]
    if not ranked:
        return []
    ranked.sort(key=lambda km: _rank(km[0], km[1], metric, prefer))
    out = [ranked[0][0]]
    if out[0] != c.MODEL_KIND_DOT and any(kind == c.MODEL_KIND_DOT for kind, _ in ranked):
        out.append(c.MODEL_KIND_DOT)
    return out


def fit_serving(paths: Paths, kind: str, ratings, users, movies, data_hash: str, device=None) -> dict:
    """Refit the champion's config of `kind` on every rating, or reuse an identical earlier serving fit.

    Registered under `serving` with TAG_SERVING_EVALUATED naming the champion; returns a summary
    (kind, version, evaluated_version, rows, reused, seconds).
    """
    from tasks import training

    champ = _champion(paths, kind)
    if champ is None:
        raise LookupError(f"no champion of {kind} to refit for serving")
    evaluated, _ = registry.load_for_scoring(paths, kind, champ.version, device="cpu")
    config = evaluated.config
    start_from = champ.run_id if config.serving_epochs else None   # a continued fit depends on the champion too
    found = training.find_serving_fit(paths, config, data_hash, start_from)
    if found is not None:
        ref = registry.use_for_serving(paths, kind, found.version, champ)
        return {"kind": kind, "version": ref.version, "evaluated_version": champ.version,
                "rows": int(registry.version_tags(paths, kind, ref.version).get(registry.TAG_SERVING_ROWS, 0)),
                "reused": True, "seconds": 0.0}
    rec, seconds, dev = training.fit_for_serving(ratings, config, users, movies, device=device,
                                                 evaluated=evaluated)
    ref = registry.record_serving(paths, rec, champ, data_hash, rows=len(ratings), seconds=seconds, device=dev,
                                  train=ratings, movies=movies,
                                  tags={training.TAG_SERVING_FINGERPRINT: training.serving_fingerprint(
                                      config, data_hash, start_from=start_from)})
    return {"kind": kind, "version": ref.version, "evaluated_version": champ.version, "rows": len(ratings),
            "reused": False, "seconds": seconds}
