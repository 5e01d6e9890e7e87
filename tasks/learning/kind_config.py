"""Each model kind's settings: its tuned recipe with the user's overrides, and how it is evaluated and served."""

from __future__ import annotations

from dataclasses import dataclass

from models import recipes
from models.config import ModelConfig
from tasks.core import contract as c
from tasks.core.errors import ConfigError


@dataclass(frozen=True)
class KindSettings:
    """What the pipeline does with one kind: its model config, and how that model is evaluated and served.

    eval_users and serving_epochs change no fitted model, so they stay out of the training fingerprint."""

    config: ModelConfig
    eval_users: int = 0         # ranking metrics on a fixed sample of this many users; 0 = all
    serving_epochs: int = 0     # serving fit: 0 = refit from scratch; N = N epochs from the champion's weights

    def __post_init__(self):
        for name in ("eval_users", "serving_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() \
                    or value < 0:
                raise ConfigError(f"model config for {self.config.kind}: {name} must be a whole number >= 0, "
                                  f"got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.serving_epochs and self.config.kind == c.MODEL_KIND_NN and self.config.n_factors == 0:
            raise ConfigError("model config for embedding_nn: serving_epochs needs a fixed n_factors (0 sizes the "
                              "NN's embeddings by the number of ids, which grows with the ratings a serving fit adds)")


def kind_settings(kind: str, overrides: dict | None = None) -> KindSettings:
    """A kind's tuned recipe with `--dot-config`/`--nn-config` overrides: model fields, eval_users, serving_epochs.

    A key the kind does not use is a ConfigError naming it (and why: another kind's field, another loss's)."""
    if kind not in c.MODEL_KINDS:
        raise ConfigError(f"model kind must be one of {c.MODEL_KINDS}, got {kind!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"model config for {kind} must be a JSON object, got {overrides!r}")
    overrides = dict(overrides or {})
    if overrides.get("kind", kind) != kind:
        raise ConfigError(f"config override kind={overrides['kind']!r} contradicts kind={kind!r}")
    overrides.pop("kind", None)
    plan = {name: overrides.pop(name) for name in ("eval_users", "serving_epochs") if name in overrides}
    try:
        config = recipes.for_kind(kind, **overrides)
    except (TypeError, ValueError) as e:  # a key or value the config refuses
        raise ConfigError(f"model config for {kind}: {e}") from e
    return KindSettings(config, **plan)


def configs_by_kind(kinds: list[str] | None, dot_config: dict | None, nn_config: dict | None) -> dict[str, dict | None]:
    """{kind: its JSON overrides} for the kinds a run trains (every kind when None), in the order given."""
    given = {c.MODEL_KIND_DOT: dot_config, c.MODEL_KIND_NN: nn_config}
    for kind in kinds or ():
        if kind not in given:
            raise ConfigError(f"model kind must be one of {c.MODEL_KINDS}, got {kind!r}")
    return {kind: given[kind] for kind in (kinds or c.MODEL_KINDS)}


def model_config(kind: str = c.MODEL_KIND_DOT, overrides: dict | None = None) -> ModelConfig:
    """The tuned recipe of a kind with overrides applied (keys it does not use raise ConfigError)."""
    return kind_settings(kind, overrides).config

