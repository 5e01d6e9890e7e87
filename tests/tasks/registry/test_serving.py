"""Serving fits through a real SQLite MLflow registry: a warm-started fit continues the registered champion."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.recipes import for_kind
from tasks.core import contract as c
from tasks.registry import mlflow_store
from tasks.registry import versions as r
from tasks.registry import promote
from tasks.registry import serving
from tasks.registry import tracking as t
from tasks.learning import training as tr
from tasks.registry import trainings
from tests.tasks.registry.test_tracking import (  # noqa: F401  (fixtures)
    data, empty_mlflow_db, fit, mlflow_home, movies_for, rmse_on)

KIND = c.MODEL_KIND_DOT
WARM = for_kind(KIND, loss="mse", n_factors=8, epochs=6, lr=1e-2, wd=0.01)
SERVING_EPOCHS = 1   # the serving fit continues the champion for one epoch


def _champion(home, train, valid, split_id):
    """Train WARM on `train`, log and register it, and make it champion: (recommender, run id, version)."""
    rec = fit(train, valid, WARM)
    run_id = t.log_training(home, rec, rec.config, {"rmse": rmse_on(rec, valid)}, rec.history,
                            t.Lineage(KIND, split_id, "hash-split"), movies=movies_for(train), train=train)
    version = r.register(home, run_id, KIND)
    promote.promote(home, KIND, version, f"test: champion trained on {split_id}")
    return rec, run_id, version


def champ_model_id(cl, version: str) -> str:
    return cl.get_model_version(c.registered_model_name(KIND), version).source.rsplit("/", 1)[-1]


def test_a_warm_serving_fit_continues_the_champion_and_is_redone_for_a_new_one(mlflow_home, data):
    home, (train, valid) = mlflow_home, data
    every = pd.concat([train, valid], ignore_index=True)
    champ, run_id, v1 = _champion(home, train, valid, "split-1")

    first = serving.fit_serving(home, KIND, every, None, None, "hash-all", device="cpu",
                                serving_epochs=SERVING_EPOCHS)
    assert first["evaluated_version"] == v1 and not first["reused"] and first["rows"] == len(every)
    tags = r.version_tags(home, KIND, first["version"])
    assert tags[trainings.TAG_SERVING_FINGERPRINT] == trainings.serving_fingerprint(WARM, "hash-all", start_from=run_id,
                                                                         serving_epochs=SERVING_EPOCHS)
    assert tags[trainings.TAG_SERVING_EVALUATED] == v1 and r.resolve(home, KIND, c.ALIAS_SERVING).version == first["version"]
    # told apart from the champion: no split (fitted on every rating), its own logged model name, and the
    # registered model says it is what serves; its run has the plots and dataset of an evaluated run
    assert c.SPLIT_ID not in tags and tags[t.TAG_EVALUATED_SPLIT] == "split-1"
    assert r.resolve(home, KIND, c.ALIAS_SERVING).split_id == "split-1"   # the publication's lineage keeps it
    cl = mlflow_store.client(home)
    mv = cl.get_model_version(c.registered_model_name(KIND), first["version"])
    assert mv.description.startswith(f"serving fit of champion v{v1}: its config refit on all {len(every):,} ratings")
    assert cl.get_logged_model(mv.source.rsplit("/", 1)[-1]).name == c.registered_model_name(KIND) + trainings.SERVING_MODEL_SUFFIX
    assert cl.get_logged_model(champ_model_id(cl, v1)).name == c.registered_model_name(KIND)
    assert cl.get_registered_model(c.registered_model_name(KIND)).tags[r.TAG_SERVES].startswith(
        f"v{first['version']} (@serving): champion v{v1}'s config refit on all {len(every):,} ratings")
    run = cl.get_run(mv.run_id)
    assert {a.path for a in cl.list_artifacts(mv.run_id, "plots")} and c.SPLIT_ID not in run.data.tags
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["all-ratings-hash-all"]
    assert run.data.tags[mlflow_store.TAG_NOTE].startswith(f"{KIND}: the **serving fit of champion v{v1}")
    served, _ = r.load_for_scoring(home, KIND, c.ALIAS_SERVING, device="cpu")
    assert len(served.history) == SERVING_EPOCHS and set(served.user_ids) == set(every[c.USER_ID])
    # it started from the registered champion's weights: one epoch at a tenth of the rate stays nearer them
    # (0.09 RMSE apart in predictions here) than the same config refitted from scratch on the same ratings
    # (0.20); one epoch at that rate from a fresh start would not have left the initial ~2.75 everywhere
    scratch, _, _ = tr.fit_for_serving(every, WARM, device="cpu")
    u, i = every[c.USER_ID].to_numpy(), every[c.ITEM_ID].to_numpy()

    def gap(rec):
        return float(np.sqrt(np.mean((rec.predict(u, i) - champ.predict(u, i)) ** 2)))

    assert gap(served) < gap(scratch)

    # the same champion and data again: the fit is reused
    again = serving.fit_serving(home, KIND, every, None, None, "hash-all", device="cpu",
                                serving_epochs=SERVING_EPOCHS)
    assert again == {**first, "reused": True, "seconds": 0.0}

    # a new champion with the same config: its serving fit continues it, not the old one's weights
    _, run_2, v2 = _champion(home, train.iloc[: len(train) // 2], valid, "split-2")
    third = serving.fit_serving(home, KIND, every, None, None, "hash-all", device="cpu",
                                serving_epochs=SERVING_EPOCHS)
    assert third["evaluated_version"] == v2 and not third["reused"] and third["version"] not in (first["version"], v2)
    assert (r.version_tags(home, KIND, third["version"])[trainings.TAG_SERVING_FINGERPRINT]
            == trainings.serving_fingerprint(WARM, "hash-all", start_from=run_2, serving_epochs=SERVING_EPOCHS))


def test_a_version_asked_for_by_number_that_no_kind_has_is_named_with_the_versions_there_are(mlflow_home, data):
    import pytest

    from tasks.core.errors import NotFound

    home, (train, valid) = mlflow_home, data
    _, _, v1 = _champion(home, train, valid, "split-1")
    (found,) = serving.load_champions(home, [KIND], v1, device="cpu")
    assert found.ref.version == v1
    with pytest.raises(NotFound) as e:   # not "no champion": the user asked for version 42
        serving.load_champions(home, [KIND], "42", device="cpu")
    assert str(e.value).startswith(f"no version '42' of registered model {c.registered_model_name(KIND)} (versions: {v1};")
    assert serving.load_champions(home, [c.MODEL_KIND_NN], c.ALIAS_CHAMPION) == []   # no champion: for the caller to say
