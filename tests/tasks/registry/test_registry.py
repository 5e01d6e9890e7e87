"""Model registry on a real SQLite store: versions, aliases, evidence-based promotion, override, loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from models.recipes import for_kind
from tasks.core import contract as c
from tasks.registry import versions as r
from tasks.registry import promote
from tasks.registry import trainings
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tests.tasks.registry.test_tracking import (  # noqa: F401  (fixtures)
    data, empty_mlflow_db, fit, mlflow_home, movies_for, rmse_on)

KIND = c.MODEL_KIND_DOT


@pytest.fixture(scope="module")
def good(data):
    train, valid = data
    return fit(train, valid, for_kind(KIND, loss="mse", n_factors=8, epochs=5, lr=1e-2, wd=0.01))


@pytest.fixture(scope="module")
def poor(data):
    # one epoch at a tiny learning rate: barely moves from the initial ~2.75 everywhere
    train, valid = data
    return fit(train, valid, for_kind(KIND, loss="mse", n_factors=8, epochs=1, lr=1e-4, wd=0.01))


def log_and_register(home, rec, valid, *, split_id="split-1", data_hash="hash-1", metrics=None):
    """Log a run with the model's real validation RMSE (plus extra metrics) and register it."""
    metrics = {"rmse": rmse_on(rec, valid), **(metrics or {})}
    run_id = t.log_training(home, rec, rec.config, metrics, rec.history, t.Lineage(KIND, split_id, data_hash))
    return run_id, r.register(home, run_id, KIND)


def aliases(home) -> dict[str, str]:
    found = mlflow_store.client(home).get_registered_model(c.registered_model_name(KIND)).aliases
    return {alias: str(version) for alias, version in found.items()}


def version_tags(home, version) -> dict[str, str]:
    return mlflow_store.client(home).get_model_version(c.registered_model_name(KIND), version).tags


def test_a_better_model_takes_champion_and_a_worse_one_never_does(mlflow_home, data, good, poor):
    home, (_, valid) = mlflow_home, data
    assert rmse_on(good, valid) < rmse_on(poor, valid) - 0.1  # the two really differ in quality

    _, v1 = log_and_register(home, poor, valid)
    first = promote.promote_if_better(home, KIND, v1, "rmse")
    assert first.promoted and "no champion yet" in first.reason
    assert aliases(home) == {c.ALIAS_CHAMPION: v1}   # the champion carries no alias a refused version may carry

    _, v2 = log_and_register(home, good, valid)
    better = promote.promote_if_better(home, KIND, v2, "rmse")
    assert better.promoted and better.champion_version == v1
    assert better.value < better.champion_value and "beats champion v1" in better.reason
    assert aliases(home) == {c.ALIAS_CHAMPION: v2}

    _, v3 = log_and_register(home, poor, valid)
    worse = promote.promote_if_better(home, KIND, v3, "rmse")
    assert not worse.promoted and worse.outcome == promote.KEPT and "does not beat" in worse.reason
    assert aliases(home) == {c.ALIAS_CANDIDATE: v3, c.ALIAS_CHAMPION: v2}
    tags = version_tags(home, v3)
    assert tags[r.TAG_DECISION] == promote.KEPT and tags[promote.TAG_REASON] == worse.reason
    mv = mlflow_store.client(home).get_model_version(c.registered_model_name(KIND), v3)
    assert mv.description.startswith(f"kept — {worse.reason}\n\nevaluated version: trained in run ")  # why, first
    model = mlflow_store.client(home).get_registered_model(c.registered_model_name(KIND))
    assert model.tags[r.TAG_SERVES] == f"v{v2} (@champion): no serving fit of it yet"
    assert f"**champion v{v2}**" in model.description and f"**candidate v{v3}**" in model.description


def test_ranking_metrics_are_higher_is_better_and_ties_keep_the_champion(mlflow_home, data, good):
    home, (_, valid) = mlflow_home, data
    assert promote.lower_is_better("rmse") and promote.lower_is_better("mae")
    assert not promote.lower_is_better("ndcg@10") and not promote.lower_is_better("hit_rate@10")
    versions = [log_and_register(home, good, valid, metrics={"ndcg@10": v})[1] for v in (0.30, 0.25, 0.30)]
    decisions = [promote.promote_if_better(home, KIND, v, "ndcg@10") for v in versions]
    assert [d.outcome for d in decisions] == [promote.PROMOTED, promote.KEPT, promote.KEPT]  # lower loses, a tie too
    assert "higher is better" in decisions[1].reason
    assert aliases(home)[c.ALIAS_CHAMPION] == versions[0]


def test_other_validation_data_is_refused_unless_the_champion_is_rescored(mlflow_home, data, good, poor):
    home, (_, valid) = mlflow_home, data
    _, v1 = log_and_register(home, poor, valid, split_id="split-old", data_hash="hash-old")
    promote.promote_if_better(home, KIND, v1, "rmse")
    _, v2 = log_and_register(home, good, valid, split_id="split-new", data_hash="hash-new")

    refused = promote.promote_if_better(home, KIND, v2, "rmse")
    assert refused.outcome == promote.REFUSED and "not comparable" in refused.reason and "split-old" in refused.reason
    assert aliases(home)[c.ALIAS_CHAMPION] == v1

    seen = []

    def rescore(champion):
        seen.append(champion)
        return {"rmse": rmse_on(champion, valid)}

    rescored = promote.promote_if_better(home, KIND, v2, "rmse", rescore=rescore)
    assert len(seen) == 1 and rescored.promoted and "re-scored" in rescored.reason
    assert rescored.champion_value == pytest.approx(rmse_on(poor, valid), rel=1e-5)
    assert aliases(home)[c.ALIAS_CHAMPION] == v2


def test_operators_can_override_with_a_reason(mlflow_home, data, good, poor):
    home, (_, valid) = mlflow_home, data
    _, v1 = log_and_register(home, good, valid)
    promote.promote_if_better(home, KIND, v1, "rmse")
    _, v2 = log_and_register(home, poor, valid)
    assert not promote.promote_if_better(home, KIND, v2, "rmse").promoted

    with pytest.raises(ValueError, match="reason"):
        promote.promote(home, KIND, v2, "  ")
    with pytest.raises(Exception):
        promote.promote(home, KIND, "99", "no such version")
    assert aliases(home)[c.ALIAS_CHAMPION] == v1

    d = promote.promote(home, KIND, v2, "roll back: v1 misbehaves in production")
    assert d.promoted and d.outcome == promote.MANUAL and d.champion_version == v1
    assert aliases(home)[c.ALIAS_CHAMPION] == v2
    assert version_tags(home, v2)[promote.TAG_REASON] == "manual override: roll back: v1 misbehaves in production"


@pytest.fixture(scope="module")
def registered(tmp_path_factory, empty_mlflow_db, data):
    """One registered dot_bias version (champion) in its own store, with the in-memory model."""
    import shutil

    from tasks.core.settings import Paths

    home = Paths(tmp_path_factory.mktemp("registered") / "home")
    home.mlflow_db.parent.mkdir(parents=True)
    shutil.copyfile(empty_mlflow_db, home.mlflow_db)
    train, valid = data
    rec = fit(train, valid, for_kind(KIND, loss="mse", n_factors=8, epochs=3, lr=1e-2, wd=0.01))
    run_id = t.log_training(home, rec, rec.config, {"rmse": rmse_on(rec, valid)}, rec.history,
                            t.Lineage(KIND, "split-9", "hash-9"), movies=movies_for(train), train=train)
    version = r.register(home, run_id, KIND)
    promote.promote_if_better(home, KIND, version, "rmse")
    return home, rec, run_id, version


def test_lineage_and_load_for_scoring(registered, data):
    home, rec, run_id, version = registered
    _, valid = data
    loaded, ref = r.load_for_scoring(home, KIND)
    name = c.registered_model_name(KIND)
    assert ref == r.ModelRef(name, version, f"models:/{name}/{version}", run_id, "split-9", "hash-9")
    assert r.resolve(home, KIND, version) == r.resolve(home, KIND, c.ALIAS_CHAMPION) == ref
    run = mlflow_store.client(home).get_run(ref.run_id)  # version -> run -> config
    assert run.data.params["n_factors"] == "8" and run.data.tags[c.SPLIT_ID] == "split-9"
    u, i = valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy()
    np.testing.assert_array_equal(loaded.predict(u, i), rec.predict(u, i))
    with pytest.raises(LookupError, match="no version 'gold'"):
        r.resolve(home, KIND, "gold")


def _in_fresh_process(home, tmp_path, body: str) -> dict:
    """Run `body` in a new Python without the project on its path (the model brings its own code); its `out`."""
    script = textwrap.dedent("""
        import importlib.util, json, sys
        # hide the editable install of this project: the model must bring its own code
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
        assert importlib.util.find_spec("tasks") is None and importlib.util.find_spec("models") is None
        import mlflow, pandas as pd
    """) + textwrap.dedent(body) + textwrap.dedent("""
        out["tasks_imported"] = "tasks" in sys.modules
        json.dump(out, open("out.json", "w"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[mlflow_store.ENV_TRACKING_URI] = home.mlflow_tracking_uri
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert not out["tasks_imported"]
    return out


def test_pyfunc_loads_in_a_fresh_process_without_the_project(registered, data, tmp_path):
    home, rec, _, _ = registered
    train, valid = data
    pairs = valid[[c.USER_ID, c.ITEM_ID]].head(50)
    pairs = pd.concat([pairs, pd.DataFrame({c.USER_ID: [999_999], c.ITEM_ID: [1]})])  # an unknown user too
    pairs.to_json(tmp_path / "pairs.json", orient="records")
    users = np.unique(pairs[c.USER_ID])[:5]
    out = _in_fresh_process(home, tmp_path, f"""
        model = mlflow.pyfunc.load_model({r.pyfunc_uri(KIND)!r})
        pairs = pd.read_json("pairs.json", orient="records")
        ratings = model.predict(pairs)
        top = model.predict(pd.DataFrame({{{c.USER_ID!r}: {users.tolist()!r}}}), params={{"mode": "recommend", "k": 4}})
        out = {{"columns": list(ratings.columns), "ratings": ratings[{c.RATING!r}].tolist(),
               "top": top.to_dict(orient="list")}}
    """)
    assert out["columns"] == [c.RATING]                       # an MSE model predicts ratings
    np.testing.assert_allclose(out["ratings"], rec.predict(pairs[c.USER_ID], pairs[c.ITEM_ID]), rtol=1e-6)
    # recommend never returns what the user rated in training: the pairs travel inside the model
    items, ratings = rec.recommend(users, 4, exclude=(train[c.USER_ID], train[c.ITEM_ID]))
    top = out["top"]
    assert list(top) == [c.USER_ID, c.RANK, c.ITEM_ID, c.RATING]
    assert top[c.USER_ID] == np.repeat(users, 4).tolist() and top[c.RANK] == [1, 2, 3, 4] * len(users)
    assert top[c.ITEM_ID] == items.reshape(-1).tolist()
    np.testing.assert_allclose(top[c.RATING], ratings.reshape(-1), rtol=1e-6)
    rated = set(zip(train[c.USER_ID], train[c.ITEM_ID]))
    assert not rated & set(zip(top[c.USER_ID], top[c.ITEM_ID]))
    assert rated & set(zip(*(a.reshape(-1) for a in (np.repeat(users, 4), rec.recommend(users, 4)[0]))))


@pytest.mark.slow
def test_mlflow_models_serve_answers_recommend_requests_over_http(registered, data, tmp_path):
    """`mlflow models serve` on the registered version, as docs/reference.md shows, in a fresh process."""
    import signal
    import urllib.request

    from tests.conftest import free_port, wait_healthy

    home, rec, _, version = registered
    train, _ = data
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[mlflow_store.ENV_TRACKING_URI] = home.mlflow_tracking_uri
    bin_dir = os.path.dirname(sys.executable)   # as the docs say: the venv's bin first on PATH (uvicorn)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    mlflow_bin = os.path.join(bin_dir, "mlflow")
    server = subprocess.Popen([mlflow_bin, "models", "serve", "-m", r.pyfunc_uri(KIND, version), "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path, env=env,
                              start_new_session=True, stdout=open(tmp_path / "serve.log", "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/ping", server)
        users = np.unique(train[c.USER_ID])[:3]
        body = {"dataframe_split": {"columns": [c.USER_ID], "data": [[int(u)] for u in users]},
                "params": {"mode": "recommend", "k": 4}}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            rows = pd.DataFrame(json.loads(resp.read())["predictions"])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    items, _ = rec.recommend(users, 4, exclude=(train[c.USER_ID], train[c.ITEM_ID]))
    assert list(rows.columns) == [c.USER_ID, c.RANK, c.ITEM_ID, c.RATING]
    assert rows[c.ITEM_ID].tolist() == items.reshape(-1).tolist()
    assert not set(zip(train[c.USER_ID], train[c.ITEM_ID])) & set(zip(rows[c.USER_ID], rows[c.ITEM_ID]))


def test_pyfunc_of_a_ranking_model_scores_new_users_from_side_features(mlflow_home, data, tmp_path):
    from tasks.learning.training import fit as fit_frames

    home, (train, valid) = mlflow_home, data
    known = np.sort(train[c.USER_ID].unique())
    rng = np.random.default_rng(4)
    users = pd.DataFrame({c.USER_ID: known, c.AGE: rng.integers(15, 70, len(known)),
                          c.GENDER: rng.choice(["M", "F"], len(known)),
                          c.OCCUPATION: rng.choice(["student", "retired", "writer"], len(known)),
                          c.ZIP_CODE: "00000"})
    config = for_kind(c.MODEL_KIND_DOT, use_side_info=True, n_factors=8, epochs=2, lr=1e-2)   # the ranking recipe
    rec = fit_frames(train, config, valid, users=users)
    run_id = t.log_training(home, rec, config, {}, rec.history, t.Lineage(c.MODEL_KIND_DOT, "split-s", "hash-s"),
                            train=train)
    version = r.register(home, run_id, c.MODEL_KIND_DOT)
    new = pd.DataFrame({c.USER_ID: [900_001, 900_002], c.AGE: [19, 66], c.GENDER: ["F", "M"],
                        c.OCCUPATION: ["student", "retired"]})
    new.to_json(tmp_path / "new.json", orient="records")
    out = _in_fresh_process(home, tmp_path, f"""
        model = mlflow.pyfunc.load_model({r.pyfunc_uri(c.MODEL_KIND_DOT, version)!r})
        new = pd.read_json("new.json", orient="records")
        top = model.predict(new, params={{"mode": "recommend", "k": 5}})
        bare = model.predict(new[[{c.USER_ID!r}]], params={{"mode": "recommend", "k": 5}})
        out = {{"top": top.to_dict(orient="list"), "bare": bare.to_dict(orient="list")}}
    """)
    top, bare = out["top"], out["bare"]
    assert list(top) == [c.USER_ID, c.RANK, c.ITEM_ID, c.SCORE]       # a ranking model's output is a score
    features = {"user_id": new[c.USER_ID].to_numpy(), "age": new[c.AGE].to_numpy(np.float64),
                "gender": new[c.GENDER].to_numpy(), "occupation": new[c.OCCUPATION].to_numpy()}
    items, scores = rec.recommend(new[c.USER_ID].to_numpy(), 5, user_features=features)
    assert top[c.ITEM_ID] == items.reshape(-1).tolist()
    np.testing.assert_allclose(top[c.SCORE], scores.reshape(-1), rtol=1e-5)
    assert top[c.SCORE] != bare[c.SCORE]                      # the side features were used, not dropped
    assert top[c.SCORE][:5] != top[c.SCORE][5:]               # different demographics, different lists


def test_server_command_points_at_the_data_home(home):
    argv = r.server_command(home, 5055)
    assert argv[1] == "server" and argv[argv.index("--port") + 1] == "5055"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{home.mlflow_db}"
    assert argv[argv.index("--artifacts-destination") + 1] == str(home.mlflow_artifacts)  # served over HTTP
    assert "--default-artifact-root" not in argv   # a client on another host never writes its own folder
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--workers") + 1] == "1"


def test_record_training_logs_registers_and_promotes_on_validation_metrics(mlflow_home, data, good):
    from tasks.learning.training import TrainResult

    home, (_, valid) = mlflow_home, data
    result = TrainResult(recommender=good, config=good.config, metrics={"rmse": 0.9, "ndcg_at_10": 0.2},
                         valid_metrics={"rmse": rmse_on(good, valid), "ndcg_at_10": 0.25},
                         history=good.history, seconds=2.5, device="cpu", split_id="split-7")
    done = trainings.record_training(home, result, "hash-7", metric="rmse", tags={"training_fingerprint": "fp-1"})
    assert done.decision.promoted and done.decision.metric == "valid_rmse"
    run = mlflow_store.client(home).get_run(done.run_id)
    assert run.data.metrics["valid_rmse"] == pytest.approx(rmse_on(good, valid))
    assert run.data.metrics["test_ndcg_at_10"] == pytest.approx(0.2)
    assert run.data.tags["training_fingerprint"] == "fp-1"
    assert r.resolve(home, KIND) == r.ModelRef(c.registered_model_name(KIND), done.version,
                                              f"models:/{c.registered_model_name(KIND)}/{done.version}",
                                              done.run_id, "split-7", "hash-7")
    assert version_tags(home, done.version)[t.TAG_TRAIN_SECONDS] == "2.500"
    assert version_tags(home, done.version)[t.TAG_DEVICE].startswith("cpu (")  # with the processor's name


def test_a_version_below_the_popularity_floor_is_registered_but_never_champion(mlflow_home, data, good, poor):
    from tasks.learning import evaluate as ev
    from tasks.learning.training import TrainResult

    home, (train, valid) = mlflow_home, data
    floor = ev.baseline_metrics(train, valid, k=10)
    assert rmse_on(poor, valid) > floor["rmse"] > rmse_on(good, valid)  # item means beat poor, good beats them

    def record(rec, tag):
        result = TrainResult(recommender=rec, config=rec.config, metrics={"rmse": rmse_on(rec, valid)},
                             valid_metrics={"rmse": rmse_on(rec, valid)}, history=rec.history, split_id="split-f")
        return trainings.record_training(home, result, "hash-f", metric="rmse", baseline=floor, baseline_name="popularity",
                                 tags={"which": tag})

    refused = record(poor, "poor")
    assert refused.decision.outcome == promote.REFUSED and not refused.decision.promoted
    assert r.champion_version(home, KIND) is None             # even with no champion at all
    tags = version_tags(home, refused.version)
    assert tags[r.TAG_DECISION] == promote.REFUSED and "popularity baseline" in tags[promote.TAG_REASON]
    assert float(tags[promote.TAG_BASELINE]) == pytest.approx(floor["rmse"], abs=1e-6)
    run = mlflow_store.client(home).get_run(refused.run_id)
    assert run.data.metrics[t.floor_metric("popularity", "valid_rmse")] == pytest.approx(floor["rmse"])
    assert aliases(home) == {c.ALIAS_CANDIDATE: refused.version}  # registered, never champion
    note = mlflow_store.client(home).get_run(refused.run_id).data.tags[mlflow_store.TAG_NOTE]
    assert note.startswith(f"{KIND}, the ranking model: registered as lensflow-{KIND} v{refused.version}, **refused** — ")

    promoted = record(good, "good")
    assert promoted.decision.promoted and r.champion_version(home, KIND) == promoted.version
    assert "no champion yet" in promoted.decision.reason


def test_the_floor_refuses_a_tie_and_ranking_metrics_compare_higher_is_better(mlflow_home, data, good):
    home, (_, valid) = mlflow_home, data
    _, v1 = log_and_register(home, good, valid, metrics={"ndcg_at_10": 0.30})
    tie = promote.promote_if_better(home, KIND, v1, "ndcg_at_10", baseline=0.30)
    assert tie.outcome == promote.REFUSED and "does not beat the popularity baseline 0.3000" in tie.reason
    above = promote.promote_if_better(home, KIND, v1, "ndcg_at_10", baseline=0.29)
    assert above.promoted and above.baseline_value == pytest.approx(0.29)


def test_a_training_flow_run_is_found_by_its_id_whether_it_trained_or_reused(mlflow_home, data, good, monkeypatch):
    """What a pipeline does after a training deployment run on another host: find its outcome by flow-run id."""
    home, (_, valid) = mlflow_home, data
    trained_by, reusers = "0a1b2c3d-0000-4000-8000-000000000001", [f"9f8e7d6c-0000-4000-8000-{i:012d}" for i in range(3)]
    run_id = t.log_training(home, good, good.config, {"rmse": rmse_on(good, valid)}, good.history,
                            t.Lineage(KIND, "split-1", "hash-1"), tags={t.TAG_FLOW_RUN_ID: trained_by})
    version = r.register(home, run_id, KIND)
    promote.promote_if_better(home, KIND, version, "rmse")
    ref, reused = r.training_of_flow_run(home, KIND, trained_by)
    assert (ref.version, ref.run_id, reused) == (version, run_id, False)
    assert r.training_of_flow_run(home, KIND, reusers[0]) is None      # nothing names it yet

    monkeypatch.setattr(r, "REUSE_MARKS_KEPT", 2)
    for i, flow_run in enumerate(reusers):                              # three later runs reuse that version
        r.mark_reused(home, KIND, version, flow_run, f"train-{KIND}-{i}")
    for flow_run in reusers[1:]:
        ref, reused = r.training_of_flow_run(home, KIND, flow_run)
        assert (ref.version, ref.run_id, reused) == (version, run_id, True)
    marks = {k for k in version_tags(home, version) if k.startswith(r.TAG_REUSED_BY + ".")}
    assert marks == {f"{r.TAG_REUSED_BY}.{f}" for f in reusers[1:]}     # the oldest mark was pruned
    assert r.training_of_flow_run(home, KIND, reusers[0]) is None
    assert r.training_of_flow_run(home, c.MODEL_KIND_NN, trained_by) is None   # another kind: not this run's
    with pytest.raises(ValueError, match="refusing"):
        r.training_of_flow_run(home, KIND, "x' or name like '%")


def test_a_training_the_pipeline_cannot_find_fails_with_one_line_naming_the_tracking_setting(mlflow_home):
    from tasks.runs import report
    from tasks.core.errors import NotFound

    with pytest.raises(NotFound) as err:
        report.training_of_flow_run(mlflow_home, KIND, "0a1b2c3d-0000-4000-8000-000000000009", "train-dot_bias-x")
    message = str(err.value)
    assert "\n" not in message and "train-dot_bias-x" in message and mlflow_store.ENV_TRACKING_URI in message
    assert mlflow_home.mlflow_tracking_uri in message
