"""The types that name a registered model: which version it is, and a loaded one ready to serve."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.core.contract import REGISTERED_MODEL_PREFIX


@dataclass(frozen=True)
class ModelRef:
    """A registered version and its lineage: what publish records next to every row it writes."""

    name: str
    version: str
    uri: str = ""        # models:/<name>/<version>
    run_id: str = ""
    split_id: str = ""
    data_hash: str = ""


@dataclass
class ServingModel:
    """A registered version loaded for scoring: the Recommender, its ref and its run's final metrics."""

    recommender: object          # models.recommender.Recommender; None where only the choice is made
    ref: ModelRef
    metrics: dict = field(default_factory=dict)   # of the evaluated version's run (the split metrics)
    evaluated: ModelRef | None = None             # the evaluated version behind a serving fit (else ref)
    alias: str = ""                               # how it was chosen: serving | champion | candidate | a number

    @property
    def evaluated_ref(self) -> ModelRef:
        return self.evaluated or self.ref

    @property
    def kind(self) -> str:
        if self.recommender is not None:
            return self.recommender.config.kind
        return self.ref.name.removeprefix(REGISTERED_MODEL_PREFIX)
