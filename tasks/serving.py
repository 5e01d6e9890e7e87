"""Which registered models serve a publication: load the champions, put the one that serves the lists first."""

from __future__ import annotations

from tasks import contract as c
from tasks import registry
from tasks import tracking as t
from tasks.model_ref import ServingModel
from tasks.settings import Paths


def load_champions(paths: Paths, kinds, alias: str = c.ALIAS_CHAMPION, device=None) -> list[ServingModel]:
    """A ServingModel for each kind that has a version under `alias` (kinds without one are left out)."""
    out = []
    for kind in kinds:
        try:
            rec, ref = registry.load_for_scoring(paths, kind, alias, device=device)
        except LookupError:
            continue
        out.append(ServingModel(rec, ref, registry.run_metrics(paths, ref.run_id)))
    return out


def order_for_publication(models: list[ServingModel], metric: str, prefer: str | None = None) -> list[ServingModel]:
    """Champions ordered so the first one serves recommendations: `prefer`'s kind, else the best by `metric`."""
    if not models:
        raise LookupError("no champion model in the registry: train and register one first")
    key = t.metric_key(metric)
    lower = registry.lower_is_better(metric)

    def rank(model: ServingModel):
        if prefer is not None:
            return (0 if model.kind == prefer else 1, 0.0)
        value = model.metrics.get(f"valid_{key}", model.metrics.get(f"test_{key}"))
        if value is None:
            return (1, 0.0)
        return (0, value if lower else -value)

    ordered = sorted(models, key=rank)
    if prefer is not None and ordered[0].kind != prefer:
        raise LookupError(f"no '{prefer}' model under the requested alias")
    return ordered
