"""Sharded publish: `--shards N` (threads here, or the Dask scheduler `--dask-address` names) gives the same
tables as unsharded; each shard reads only its users' rows; a bad scheduler fails before any flow."""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pyarrow as pa
import pytest

from tasks.core import contract as c
from tasks.stores import lake
from tasks.stores import publications
from tasks.core import settings
from tasks.publishing import sharding
from tasks.stores import warehouse
from tasks.core.errors import ConfigError
from tasks.core.settings import Paths
from tasks.stores.split_store import SplitSpec


def _recommendations(home) -> pd.DataFrame:
    con = warehouse.connect_readonly(home)
    try:
        cols = ", ".join((c.USER_ID, c.RANK, c.ITEM_ID, c.SCORE, c.SOURCE, c.MODEL_NAME, c.MODEL_VERSION))
        return con.sql(f"select {cols} from {c.RECOMMENDATIONS} order by {c.USER_ID}, {c.RANK}").df()
    finally:
        con.close()


def test_user_ranges_cover_every_user_once():
    ids = [5, 1, 9, 3, 3, 7, 2]
    ranges = sharding.user_ranges(ids, 3)
    assert ranges == [(1, 2), (3, 5), (7, 9)]  # unique ids 1 2 3 5 7 9, two per shard
    assert sharding.user_ranges([4], 8) == [(4, 4)]
    assert sharding.user_ranges([], 2) == []
    with pytest.raises(ValueError, match="shards"):
        sharding.user_ranges(ids, 0)


def test_a_shard_reads_only_its_users_rows(tmp_path):
    paths = Paths(tmp_path / "home")
    ratings = pa.table({c.USER_ID: pa.array([4, 1, 3, 2, 5, 3, 1], pa.int32()),
                        c.ITEM_ID: pa.array([10, 11, 12, 13, 14, 15, 16], pa.int32())})
    users = pa.table({c.USER_ID: pa.array([1, 2, 3, 4, 5], pa.int32()),
                      c.AGE: pa.array([20, 30, 40, 50, 60], pa.int16())})
    lake.write_snapshot(paths, {c.RATINGS: ratings, c.USERS: users}, "old")
    newer = pa.table({c.USER_ID: pa.array([3], pa.int32()), c.ITEM_ID: pa.array([99], pa.int32())})
    lake.write_snapshot(paths, {c.RATINGS: newer, c.USERS: users}, "new")   # now the live one

    mine, who = sharding.read_shard(paths, 2, 3, data_hash="old")
    assert sorted(zip(mine[c.USER_ID], mine[c.ITEM_ID])) == [(2, 13), (3, 12), (3, 15)]
    assert who[c.USER_ID].tolist() == [2, 3] and who[c.AGE].tolist() == [30, 40]
    assert lake.read(paths, c.RATINGS, user_range=(1, 5))[c.ITEM_ID].tolist() == [99]   # default: the live one
    assert lake.read(paths, c.RATINGS, user_range=(6, 9), data_hash="old").empty
    with pytest.raises(FileNotFoundError, match="gone"):
        lake.read(paths, c.RATINGS, data_hash="gone")


def test_shards_and_dask_address_options(capsys, monkeypatch):
    from flows.cli import build_parser

    parse = build_parser().parse_args
    for command in ("run", "publish"):
        assert (parse([command]).shards, parse([command]).dask_address) == (1, None)
        a = parse([command, "--shards", "4", "--dask-address", " tcp://sched.example:8786 "])
        assert (a.shards, a.dask_address) == (4, "tcp://sched.example:8786")
    assert parse(["publish", "--shards", "2", "--dask-address", "sched:8786"]).dask_address == "sched:8786"
    for bad, says in ((["--shards", "0"], "must be a whole number >= 1, got '0'"),
                      (["--shards", "two"], "invalid int value: 'two'"),
                      (["--shards", "2", "--dask-address", "http://sched:8786"], "looks like tcp://host:8786"),
                      (["--shards", "2", "--dask-address", "tcp://sched"], "looks like tcp://host:8786"),
                      (["--shards", "2", "--dask-address", "tcp://sched:99999"], "looks like tcp://host:8786")):
        with pytest.raises(SystemExit) as exited:
            parse(["publish", *bad])
        assert exited.value.code == 2
        assert says in capsys.readouterr().err.strip().splitlines()[-1]

    monkeypatch.setenv(settings.DASK_ADDRESS_ENV, "tcp://from-env:8786")
    assert settings.dask_address() == "tcp://from-env:8786"
    assert settings.dask_address("tcp://given:1") == "tcp://given:1"
    monkeypatch.setenv(settings.DASK_ADDRESS_ENV, "from-env")
    with pytest.raises(ConfigError, match="from-env"):
        settings.dask_address()
    monkeypatch.delenv(settings.DASK_ADDRESS_ENV)
    assert settings.dask_address() is None


def _without_ratings(source, tmp_path, users=(5, 60, 100)):
    """A copy of the data set where some users (inside the id ranges) have no ratings: no model learns them."""
    out = tmp_path / "source"
    shutil.copytree(source, out)
    lines = (out / "u.data").read_text().splitlines(keepends=True)
    (out / "u.data").write_text("".join(x for x in lines if int(x.split("\t", 1)[0]) not in users))
    return out


def _publish_cli(paths: Paths, *options: str) -> None:
    """`lensflow publish ...` through the CLI's own parser and command, in this process (this session's API)."""
    from flows import commands
    from flows.cli import build_parser

    before = list(logging.getLogger().handlers)
    try:
        commands.publish(build_parser().parse_args(["publish", "--home", str(paths.home), "-n", "10", "-k", "5",
                                                    *options]), paths)
    finally:  # the command's log file handler goes with the test
        for handler in set(logging.getLogger().handlers) - set(before):
            logging.getLogger().removeHandler(handler)
            handler.close()


@pytest.mark.slow
def test_sharded_publish_from_the_cli_and_on_a_dask_scheduler_match_unsharded(prefect_api, home, synthetic_small,
                                                                              tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    from flows.pipeline import pipeline

    summary = pipeline(source=str(_without_ratings(synthetic_small, tmp_path)), home=str(home.home),
                       split=SplitSpec(seed=5), kinds=[c.MODEL_KIND_DOT], dot_config={"epochs": 2}, n=10, k=5)
    unsharded = _recommendations(home)
    cold = unsharded[unsharded[c.SOURCE] != c.SOURCES[0]]   # not from the model (side info or popularity)
    assert sorted(cold[c.USER_ID].unique()) == [5, 60, 100]  # inside the shards' id ranges: scored once, here
    published = summary["publication"]["publication_id"]

    def same_tables():
        sharded = _recommendations(home)
        assert len(sharded) == len(unsharded) > 0
        pd.testing.assert_frame_equal(sharded, unsharded, check_exact=False, rtol=1e-5)

    _publish_cli(home, "--shards", "2")      # threads in this process
    same_tables()
    assert '"skipped": false' in capsys.readouterr().out
    assert publications.current(home) != published

    # a real scheduler and workers reached over TCP by address (workers as threads: no process start-up)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        before = cluster.scheduler.transition_counter
        _publish_cli(home, "--shards", "3", "--dask-address", cluster.scheduler_address)
        ran_on_dask = cluster.scheduler.transition_counter - before
    same_tables()
    assert ran_on_dask > 0   # the shard tasks went through the scheduler



def test_deployments_take_shards_and_a_dask_address():
    """The shipped deployments name both parameters, with values their flows accept."""
    import jsonschema
    import yaml
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline
    from flows.publish import publish
    from tests.conftest import REPO_ROOT

    shipped = yaml.safe_load((REPO_ROOT / "deployments" / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in shipped["deployments"]}
    for name, flow in (("daily", pipeline), ("publish", publish)):
        given = by_name[name]["parameters"]
        assert {"shards", "dask_address"} <= set(given), name
        jsonschema.validate(given, parameter_schema(flow).model_dump_for_openapi())
        jsonschema.validate({**given, "shards": 4, "dask_address": "tcp://scheduler:8786"},
                            parameter_schema(flow).model_dump_for_openapi())
