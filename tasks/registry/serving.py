"""Which registered models serve a publication, and their serving fits.

Model choice stays on the split: `champion` is the evaluated version that won on validation data.
`fit_serving` then refits the champion's config on every rating (a version of its own under the
`serving` alias, tagged with the evaluated version); `load_champions(..., alias='serving')` serves that
fit where it belongs to the current champion and data, else the champion itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core import contract as c
from tasks.core.errors import NotFound
from tasks.core.settings import Paths
from tasks.learning import training
from tasks.registry import trainings
from tasks.registry import versions as registry
from tasks.registry.model_ref import ModelRef, ServingModel


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
    if not registry.refits(registry.version_tags(paths, kind, ref.version), champion.version):
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


@dataclass(frozen=True)
class Roles:
    """Which served model does what in a publication: its lists, its similar items, its predicted ratings."""

    ranking: ServingModel                # orders every learnt user's list (the ranking model, dot_bias)
    similar: ServingModel                # its item vectors join the co-ratings of similar items (a dot model)
    rating: ServingModel | None          # predicted_rating of every row (the rating model's champion), or None
    no_rating: str = ""                  # why there is no rating model, when there is none

    @property
    def models(self) -> list[ServingModel]:
        """Each model once: ranking, then similar items, then rating."""
        out = []
        for m in (self.ranking, self.similar, self.rating):
            if m is not None and all(m.ref != o.ref for o in out):
                out.append(m)
        return out


def roles(models: list[ServingModel], prefer: str | None = None) -> Roles:
    """Give each served model its job: the lists from `prefer`'s kind (else the ranking kind, else the first),
    similar items from a dot model, predicted ratings from the rating kind's champion (never a refused
    candidate: a rating no model earned is left null)."""
    if not models:
        raise LookupError("no champion model in the registry: train and register one first")
    by_kind = {m.kind: m for m in models}
    if prefer is not None and prefer not in by_kind:
        raise LookupError(f"no '{prefer}' model under the requested alias")
    ranking = by_kind.get(prefer or c.MODEL_KIND_DOT, models[0])
    similar = by_kind.get(c.MODEL_KIND_DOT, ranking)
    rating = by_kind.get(c.MODEL_KIND_NN)
    why = ""
    if rating is None:
        why = f"no {c.MODEL_KIND_NN} model to serve: no version beat the bias baseline yet, or the kind was not asked for"
    elif rating.alias == c.ALIAS_CANDIDATE:
        why = (f"{rating.ref.name} v{rating.ref.version} is only a candidate (refused by the bias baseline): "
               f"no rating model has earned {c.ALIAS_CHAMPION}")
        rating = None
    return Roles(ranking, similar, rating, why)


def serving_kinds(paths: Paths, kinds) -> list[str]:
    """The kinds a publication will use and so need a serving fit: each one with a champion."""
    return [kind for kind in kinds if _champion(paths, kind) is not None]


def fit_serving(paths: Paths, kind: str, ratings, users, movies, data_hash: str, device=None,
                serving_epochs: int = 0, run_tags: dict[str, str] | None = None) -> dict:
    """Refit the champion's config of `kind` on every rating, or reuse an identical earlier serving fit.

    serving_epochs > 0 continues the champion's weights for that many epochs instead (tasks.learning.training).
    Registered under `serving` with TAG_SERVING_EVALUATED naming the champion, `run_tags` on its MLflow run (the
    Prefect flow run, as a training's); returns a summary
    (kind, version, evaluated_version, rows, reused, seconds).
    """
    champ = _champion(paths, kind)
    if champ is None:
        raise LookupError(f"no champion of {kind} to refit for serving")
    evaluated, _ = registry.load_for_scoring(paths, kind, champ.version, device="cpu")
    config = evaluated.config
    start_from = champ.run_id if serving_epochs else None   # a continued fit depends on the champion too
    found = trainings.find_serving_fit(paths, config, data_hash, start_from, serving_epochs)
    if found is not None:
        ref = trainings.use_for_serving(paths, kind, found.version, champ)
        return {"kind": kind, "version": ref.version, "evaluated_version": champ.version,
                "rows": int(registry.version_tags(paths, kind, ref.version).get(trainings.TAG_SERVING_ROWS, 0)),
                "reused": True, "seconds": 0.0}
    rec, seconds, dev = training.fit_for_serving(ratings, config, users, movies, device=device,
                                                 evaluated=evaluated, serving_epochs=serving_epochs)
    ref = trainings.record_serving(paths, rec, champ, data_hash, rows=len(ratings), seconds=seconds, device=dev,
                                  train=ratings, movies=movies,
                                  tags={**(run_tags or {}), trainings.TAG_SERVING_FINGERPRINT: trainings.serving_fingerprint(
                                      config, data_hash, start_from=start_from, serving_epochs=serving_epochs)})
    return {"kind": kind, "version": ref.version, "evaluated_version": champ.version, "rows": len(ratings),
            "reused": False, "seconds": seconds}
