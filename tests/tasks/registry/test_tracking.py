"""MLflow tracking on a real SQLite store: one run per training, with params, steps, tags and pictures."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from models.config import ModelConfig, flat
from models.recipes import for_kind
from models.recommender import Recommender
from tasks.core import contract as c
from tasks.registry import plots
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tasks.core.settings import Paths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def latent_ratings(n_users=60, n_items=80, n=4000, seed=0) -> pd.DataFrame:
    """Ratings with biases and a 3-factor structure, so a model can learn (and a lazy one cannot)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(1, n_users + 1, n * 2)
    i = rng.integers(1, n_items + 1, n * 2)
    pairs = pd.DataFrame({c.USER_ID: u, c.ITEM_ID: i}).drop_duplicates().head(n)
    ub, ib = rng.normal(0, 0.5, n_users + 1), rng.normal(0, 0.7, n_items + 1)
    uf, itf = rng.normal(0, 0.6, (n_users + 1, 3)), rng.normal(0, 0.6, (n_items + 1, 3))
    uu, ii = pairs[c.USER_ID].to_numpy(), pairs[c.ITEM_ID].to_numpy()
    raw = 3.4 + ub[uu] + ib[ii] + (uf[uu] * itf[ii]).sum(1) + rng.normal(0, 0.3, len(uu))
    pairs[c.RATING] = np.clip(np.round(raw), 1, 5).astype(np.float32)
    return pairs.reset_index(drop=True)


def split(frame: pd.DataFrame, valid_share=0.2):
    """(train, valid) frames, deterministic."""
    cut = int(len(frame) * (1 - valid_share))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def fit(train: pd.DataFrame, valid: pd.DataFrame, config: ModelConfig) -> Recommender:
    """A Recommender trained on the frames (raw ids)."""
    return Recommender.fit(train[c.USER_ID], train[c.ITEM_ID], train[c.RATING], config,
                           valid=(valid[c.USER_ID], valid[c.ITEM_ID], valid[c.RATING]), device="cpu")


def rmse_on(rec: Recommender, valid: pd.DataFrame) -> float:
    """Validation RMSE computed here, independently of the code under test."""
    pred = rec.predict(valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy())
    return float(np.sqrt(np.mean((pred - valid[c.RATING].to_numpy()) ** 2)))


def movies_for(frame: pd.DataFrame) -> pd.DataFrame:
    ids = np.sort(frame[c.ITEM_ID].unique())
    return pd.DataFrame({c.ITEM_ID: ids, c.TITLE: [f"Movie number {i}" for i in ids]})


@functools.lru_cache(maxsize=1)
def empty_store() -> Path:
    """A freshly migrated, empty MLflow SQLite store, made once per test process and shared by the
    registry tests that import this module: creating one costs 3-10 s here, copying it ~1 ms."""
    p = Paths(Path(tempfile.mkdtemp(prefix="lensflow-mlflow-template-")))
    mlflow_store.client(p).search_experiments()  # runs MLflow's schema migrations
    return p.mlflow_db


@pytest.fixture(scope="session")
def empty_mlflow_db():
    return empty_store()


@pytest.fixture
def mlflow_home(home, empty_mlflow_db):
    """A fresh data home whose (real, SQLite) MLflow store starts empty."""
    home.mlflow_db.parent.mkdir(parents=True)
    shutil.copyfile(empty_mlflow_db, home.mlflow_db)
    return home


@pytest.fixture(scope="module")
def data():
    return split(latent_ratings())


@pytest.fixture(scope="module")
def dot_model(data):
    train, valid = data
    return fit(train, valid, for_kind("dot_bias", loss="mse", n_factors=8, epochs=4, lr=1e-2, wd=0.01))


def test_one_run_per_training_with_params_steps_tags_and_pictures(mlflow_home, data, dot_model):
    home = mlflow_home
    train, valid = data
    config = dot_model.config
    lineage = t.Lineage(c.MODEL_KIND_DOT, split_id="split-abc", data_hash="hash-123", device="cpu",
                        train_seconds=1.25)
    metrics = {"rmse": rmse_on(dot_model, valid), "ndcg@10": 0.31, "skipped": float("nan")}
    uri_before = mlflow.get_tracking_uri()

    run_id = t.log_training(home, dot_model, config, metrics, dot_model.history, lineage,
                            movies=movies_for(train), train=train)

    assert mlflow.get_tracking_uri() == uri_before  # no global state leaks out
    cl = MlflowClient(tracking_uri=f"sqlite:///{home.mlflow_db}")
    run = cl.get_run(run_id)
    assert run.info.status == "FINISHED"
    exp = cl.get_experiment(run.info.experiment_id)
    assert exp.name == mlflow_store.EXPERIMENT and exp.artifact_location == home.mlflow_artifacts.as_uri()
    # the config as parameters: exactly the settings its model uses (no item-item or softmax keys on an mse model)
    assert run.data.params["n_factors"] == "8" and run.data.params["kind"] == c.MODEL_KIND_DOT
    assert {"kind", *flat(config)} <= set(run.data.params)
    assert not {"n_negatives", "item_item_weight", "layers"} & set(run.data.params)
    # per-epoch losses as steps, equal to the training history
    steps = cl.get_metric_history(run_id, "loss/train_mse")
    assert [m.step for m in sorted(steps, key=lambda m: m.step)] == list(range(config.train.epochs))
    assert sorted(steps, key=lambda m: m.step)[-1].value == pytest.approx(dot_model.history[-1]["train_loss"])
    assert len(cl.get_metric_history(run_id, "loss/valid_mse")) == config.train.epochs
    # final metrics with MLflow-safe names; non-finite ones left out
    assert run.data.metrics["rmse"] == pytest.approx(metrics["rmse"])
    assert run.data.metrics["ndcg_10"] == pytest.approx(0.31)
    assert "skipped" not in run.data.metrics
    # lineage tags
    tags = run.data.tags
    assert (tags[c.SPLIT_ID], tags[c.DATA_HASH], tags[t.TAG_DEVICE]) == ("split-abc", "hash-123", "cpu")
    assert tags[t.TAG_TRAIN_SECONDS] == "1.250" and tags[t.TAG_CODE_VERSION] == t.code_version() != ""
    assert tags[t.TAG_MODEL_ID].startswith("m-")
    # pictures people look at
    names = {a.path for a in cl.list_artifacts(run_id, "plots")}
    assert {"plots/loss_curves.png", "plots/item_embeddings_pca.png", "plots/item_bias.png",
            "plots/item_bias.csv", "plots/item_bias.md"} <= names
    local = cl.download_artifacts(run_id, "plots", str(home.home / "dl"))
    for png in ("loss_curves.png", "item_embeddings_pca.png", "item_bias.png"):
        assert (home.home / "dl" / "plots" / png).read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(f"{local}/item_bias.csv")
    assert table[plots.BIAS].iloc[0] == table[plots.BIAS].max()
    assert table[plots.BIAS].iloc[-1] == table[plots.BIAS].min()
    assert table[c.TITLE].iloc[0].startswith("Movie number")


def test_a_failed_logging_marks_the_run_failed(mlflow_home, dot_model):
    home = mlflow_home

    class Broken:
        item_embeddings = dot_model.item_embeddings
        model = dot_model.model
        item_ids = dot_model.item_ids

        def save(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        t.log_training(home, Broken(), dot_model.config, {"rmse": 1.0}, dot_model.history,
                       t.Lineage(c.MODEL_KIND_DOT, "s", "h"))
    cl = mlflow_store.client(home)
    runs = cl.search_runs([mlflow_store.experiment_id(home)])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_embedding_nn_gets_a_bias_table_only_when_it_has_output_biases(data, tmp_path):
    train, valid = data
    # these frames have no rating times: the NN without its time input (time_features)
    plain = fit(train, valid, for_kind("embedding_nn", n_factors=4, layers=(8,), epochs=1, biases=False, user_bag=0,
                                       time_features=False))
    written = {p.name for p in plots.write_pictures(tmp_path / "plain", plain, plain.history, movies_for(train), train)}
    assert written == {"loss_curves.png", "item_embeddings_pca.png"}
    rating = fit(train, valid, for_kind("embedding_nn", n_factors=4, layers=(8,), epochs=1,   # the recipe: biases
                                        time_features=False))
    written = {p.name for p in plots.write_pictures(tmp_path / "rating", rating, rating.history, movies_for(train),
                                                    train)}
    assert {"loss_curves.png", "item_embeddings_pca.png", "item_bias.png", "item_bias.csv"} <= written


def test_metric_keys_and_flat_params():
    assert mlflow_store.metric_key("ndcg@10") == "ndcg_10" and mlflow_store.metric_key("valid_loss") == "valid_loss"
    flat = t.flat_params({"a": 1, "b": {"c": (1, 2), "d": {}}, "e@f": None})
    assert flat == {"a": "1", "b.c": "(1, 2)", "b.d": "{}", "e_f": "None"}


def test_history_frame_accepts_rows_or_columns():
    rows = plots.history_frame([{"train_loss": 2.0}, {"train_loss": 1.0}])
    cols = plots.history_frame({"train_loss": [2.0, 1.0]})
    assert rows["epoch"].tolist() == cols["epoch"].tolist() == [0, 1]
    assert rows["train_loss"].tolist() == cols["train_loss"].tolist() == [2.0, 1.0]


def test_pca_2d_finds_the_direction_of_largest_spread():
    rng = np.random.default_rng(1)
    along = rng.normal(0, 10, 50)
    matrix = np.stack([along, 0.01 * rng.normal(size=50), along], axis=1)   # spread lies on (1, 0, 1)
    proj = plots.pca_2d(matrix)
    assert proj.shape == (50, 2)
    assert np.var(proj[:, 0]) > 1000 * np.var(proj[:, 1])
    assert abs(np.corrcoef(proj[:, 0], along)[0, 1]) == pytest.approx(1.0, abs=1e-6)


def test_bias_table_lists_highest_then_lowest():
    ids = np.arange(1, 31)
    table = plots.bias_table(ids, ids / 10.0, {1: "Lowest"}, {1: 7}, n=3)
    assert table[c.ITEM_ID].tolist() == [30, 29, 28, 3, 2, 1]
    assert table.iloc[-1][c.TITLE] == "Lowest" and table.iloc[-1][plots.N_RATINGS] == 7
    assert "| 30 | 30 | +3.000 | 0 |" in plots.bias_markdown(table)


def test_two_trainings_logged_from_threads_stay_in_their_store(mlflow_home, dot_model, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from tasks.registry import versions as registry

    monkeypatch.chdir(tmp_path)  # MLflow's fallback store would appear here as ./mlflow.db
    uri_before = mlflow.get_tracking_uri()

    def log_and_register(n):
        run_id = t.log_training(mlflow_home, dot_model, dot_model.config, {"rmse": 1.0 + n}, dot_model.history,
                                t.Lineage(c.MODEL_KIND_DOT, "s", "h"))
        return run_id, registry.register(mlflow_home, run_id)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(log_and_register, range(2)))
    cl = mlflow_store.client(mlflow_home)
    assert {cl.get_run(run_id).info.status for run_id, _ in done} == {"FINISHED"}
    assert sorted(v for _, v in done) == ["1", "2"]
    assert mlflow.get_tracking_uri() == uri_before
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_losses_are_named_by_type_and_each_epoch_keeps_its_time(mlflow_home, data, dot_model):
    home = mlflow_home
    train, valid = data
    ranking = fit(train, valid, for_kind("dot_bias", n_factors=8, epochs=3, lr=1e-2))
    runs = {}
    for rec in (dot_model, ranking):
        runs[rec.config.loss.name] = t.log_training(home, rec, rec.config, {"rmse": 1.0}, rec.history,
                                               t.Lineage(c.MODEL_KIND_DOT, "s", "h"), movies=movies_for(train),
                                               train=train, tags={t.TAG_FLOW_RUN_ID: "flow-run-1"})
    cl = mlflow_store.client(home)
    mse, softmax = cl.get_run(runs["mse"]), cl.get_run(runs["softmax"])
    assert {"loss/train_mse", "loss/valid_mse", "time/epoch_seconds"} <= set(mse.data.metrics)
    assert {"loss/train_softmax_ce", "loss/valid_softmax_ce", "time/epoch_seconds"} <= set(softmax.data.metrics)
    assert not {"train_loss", "valid_loss", "loss/train_mse", "loss/valid_mse"} & set(softmax.data.metrics)
    assert not {"train_loss", "valid_loss", "loss/train_softmax_ce"} & set(mse.data.metrics)
    # no job metric given: no job section; the loss curves' section comes first
    assert mlflow_chart_sections(softmax.data.metrics) == ["loss", "time", MODEL_METRICS]
    # each epoch at its own wall-clock time, the run from the fit's start to the end of logging
    history = sorted(cl.get_metric_history(runs["softmax"], "loss/valid_softmax_ce"), key=lambda m: m.step)
    assert [m.timestamp for m in history] == [int(h["finished_at"] * 1000) for h in ranking.history]
    first = ranking.history[0]
    assert softmax.info.start_time == int((first["finished_at"] - first["seconds"]) * 1000)
    assert softmax.info.end_time >= history[-1].timestamp
    assert softmax.info.end_time - softmax.info.start_time >= 1000 * sum(h["seconds"] for h in ranking.history)
    # the Prefect flow run passed down as a tag; the experiment says what it holds
    assert softmax.data.tags[t.TAG_FLOW_RUN_ID] == "flow-run-1"
    assert cl.get_experiment(softmax.info.experiment_id).tags[mlflow_store.TAG_NOTE] == mlflow_store.EXPERIMENT_DESCRIPTION
    # the logged model is named for what it is and declares its outputs
    model_id = softmax.data.tags[t.TAG_MODEL_ID]
    logged = cl.get_logged_model(model_id)
    assert logged.name == c.registered_model_name(c.MODEL_KIND_DOT)   # the registered model's name
    # ... with the run's final metrics and each loss curve's last epoch (not its first)
    shown = {(m.key, m.value) for m in logged.metrics}
    assert {("rmse", 1.0), ("loss/valid_softmax_ce", history[-1].value)} <= shown
    assert len(shown) == len({key for key, _ in shown}), shown   # one value per metric: no first epoch
    # MLflow's Source, Created by and Dataset columns are filled; the description has no '<...>' the UI would eat
    assert softmax.data.tags["mlflow.source.name"] == "lensflow" and t.TAG_USER in softmax.data.tags
    assert [d.dataset.name for d in softmax.inputs.dataset_inputs] == ["s/train"]
    assert "<" not in mlflow_store.EXPERIMENT_DESCRIPTION
    # the parameters are the ones its model uses: a dot model's config has no NN layers
    assert "layers" not in softmax.data.params and "n_negatives" in softmax.data.params
    with mlflow_store.using_tracking_uri(home.mlflow_tracking_uri):
        outputs = mlflow.models.get_model_info(f"models:/{model_id}").signature.outputs
    assert outputs.input_names() == [c.RATING, c.USER_ID, c.RANK, c.ITEM_ID, c.SCORE]


MODEL_METRICS = "Model metrics"   # MLflow's section of the unprefixed metrics


def mlflow_chart_sections(keys) -> list[str]:
    """The chart sections of a run's Model metrics tab, in MLflow's order (RunsChartsCardConfig.
    getBaseChartAndSectionConfigs in its UI): a metric's section is its name up to the last '/', the sections
    sorted by JavaScript's default sort (character codes, as Python's for these names), the unprefixed metrics
    last in one section 'Model metrics'."""
    named = {key.rsplit("/", 1)[0] for key in keys if "/" in key}
    return sorted(named) + ([MODEL_METRICS] if any("/" not in key for key in keys) else [])


def test_a_run_page_opens_on_the_job_metric_then_the_loss_curves(mlflow_home, data, dot_model):
    """The issue's "a run page shows the metrics that matter first": job metric, loss curves, then the rest."""
    from tasks.learning.training import TrainResult
    from tasks.registry import trainings

    train, valid = data
    assert mlflow_chart_sections(["b/x", "a/y", "z", "a/b/c"]) == ["a", "a/b", "b", MODEL_METRICS]   # the rule
    rmse = rmse_on(dot_model, valid)
    result = TrainResult(recommender=dot_model, config=dot_model.config, metrics={"rmse": rmse + 0.01, "mae": 0.7},
                         valid_metrics={"rmse": rmse, "mae": 0.69}, history=dot_model.history, split_id="s")
    done = trainings.record_training(mlflow_home, result, "h", train=train, metric="rmse",
                                     baseline={"rmse": 0.95, "mae": 0.75}, baseline_name="bias_baseline")
    cl = mlflow_store.client(mlflow_home)
    metrics = cl.get_run(done.run_id).data.metrics
    sections = mlflow_chart_sections(metrics)
    assert sections == ["job", "loss", "promotion_floor", "time", MODEL_METRICS]
    assert [s + "/" for s in sections[:-1]] == list(t.SECTIONS)
    # the job section holds the promotion metric on both parts, the same values as the plain names
    assert {k for k in metrics if k.startswith(t.JOB)} == {"job/valid_rmse", "job/test_rmse"}
    assert metrics["job/valid_rmse"] == metrics["valid_rmse"] == pytest.approx(rmse)
    assert metrics["job/test_rmse"] == metrics["test_rmse"]
    assert metrics[t.floor_metric("bias_baseline", "valid_rmse")] == 0.95
    assert {k for k in metrics if "/" not in k} == {"valid_rmse", "test_rmse", "valid_mae", "test_mae"}
    # the logged model lists each metric once, by its plain name
    logged = cl.get_logged_model(cl.get_run(done.run_id).data.tags[t.TAG_MODEL_ID])
    assert not {m.key for m in logged.metrics if m.key.startswith(t.JOB)}
    # the job metric follows --promotion-metric; a run with no metric of that name gets no job section
    assert t.job_metrics({"valid_mae": 0.7, "test_mae": 0.71, "valid_rmse": 0.9}, "mae") == {
        "job/valid_mae": 0.7, "job/test_mae": 0.71}
    assert t.job_metrics({"valid_rmse": 0.9}, "ndcg_at_10") == {} == t.job_metrics({"valid_rmse": 0.9}, None)


def test_an_experiment_made_before_descriptions_gets_one(mlflow_home):
    cl = mlflow_store.client(mlflow_home)
    made = cl.create_experiment(mlflow_store.EXPERIMENT, artifact_location=mlflow_home.mlflow_artifacts.as_uri())
    assert mlflow_store.TAG_NOTE not in cl.get_experiment(made).tags
    assert mlflow_store.experiment_id(mlflow_home) == made
    assert cl.get_experiment(made).tags[mlflow_store.TAG_NOTE] == mlflow_store.EXPERIMENT_DESCRIPTION


def test_step_metrics_of_an_old_history_without_times_use_now():
    rows = t.step_metrics([{"epoch": 0, "train_loss": 2.0, "valid_loss": None, "seconds": 1.5}], 1234, "softmax")
    assert {(m.key, m.value, m.timestamp, m.step) for m in rows} == {("loss/train_softmax_ce", 2.0, 1234, 0),
                                                                       ("time/epoch_seconds", 1.5, 1234, 0)}
    assert t.fit_started_ms([{"epoch": 0, "train_loss": 2.0}]) is None


def test_pca_reports_the_variance_each_component_explains():
    rng = np.random.default_rng(2)
    matrix = np.stack([rng.normal(0, 10, 200), rng.normal(0, 1, 200), rng.normal(0, 0.1, 200)], axis=1)
    proj, share = plots.pca(matrix)
    assert proj.shape == (200, 2) and share[0] > 0.95 > share[1] > 0
    assert np.allclose(proj, plots.pca_2d(matrix))


def test_labels_are_spread_so_none_overlaps():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    points = np.zeros((12, 2)) + np.linspace(0, 0.05, 12)[:, None]  # twelve points on top of each other
    drawn = plots.spread_labels(ax, points, [f"A movie title {i}" for i in range(12)])
    renderer = fig.canvas.get_renderer()
    boxes = []
    for label in ax.texts:  # the text's own box, not its leader line
        label.update_positions(renderer)
        boxes.append(Text.get_window_extent(label, renderer))
    assert drawn == len(boxes) >= 8
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_labels_name_the_most_rated_and_both_ends_of_each_axis():
    well_known = [[0.0, 0.0], [5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]]
    rare = [[9.0, 0.0], [-9.0, 0.0], [0.0, 9.0], [0.0, -9.0], [0.1, 0.1]]   # further out, rated once each
    proj, n_rated = np.array(well_known + rare), np.array([100, 50, 50, 50, 50, 1, 1, 1, 1, 1])
    picked = plots.pick_labels(proj, n_rated, n_labels=5)
    assert picked[0] == 0 and set(picked) == {0, 1, 2, 3, 4}


def test_the_bias_plot_says_what_a_bias_means_for_the_loss():
    assert "popularity" in plots.bias_meaning("softmax")[0]
    assert "rated" in plots.bias_meaning("mse")[0] and "popularity" not in plots.bias_meaning("mse")[0]
    counts = np.array([1, 5, 20, 100])
    assert plots.popularity_correlation(np.log(counts), counts) == pytest.approx(1.0)


def test_trainings_on_the_same_split_logged_at_once_share_one_dataset(mlflow_home, data, dot_model):
    # The pipeline trains both kinds on one split at the same time: each run logs that split's training ratings
    # as its dataset. MLflow inserts a dataset after looking for it, so two runs racing both insert and one
    # fails on the store's unique key; the loser must find the winner's dataset and use it.
    from concurrent.futures import ThreadPoolExecutor

    train, _ = data
    cl = mlflow_store.client(mlflow_home)
    exp = t.experiment_id(mlflow_home, t.EXPERIMENT, cl)
    for attempt in range(3):
        runs = [cl.create_run(exp).info.run_id for _ in range(8)]
        lineage = t.Lineage(c.MODEL_KIND_DOT, f"split-{attempt}", "h")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda run_id: t._log_dataset(cl, run_id, train, lineage), runs))
        inputs = [cl.get_run(run_id).inputs.dataset_inputs for run_id in runs]
        assert all(len(i) == 1 and i[0].dataset.name == f"split-{attempt}/train" for i in inputs)
        assert len({i[0].dataset.digest for i in inputs}) == 1
