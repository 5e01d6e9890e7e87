"""The publish step sharded by user ranges on a local Dask cluster gives the same tables as unsharded."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks import contract as c
from tasks import sharding, warehouse
from tasks.split import SplitSpec


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


@pytest.mark.slow
def test_sharded_publish_on_local_dask_cluster_matches_unsharded(prefect_api, home, synthetic_small):
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import pipeline
    from flows.publish import publish

    pipeline(source=str(synthetic_small), home=str(home.home), split=SplitSpec(seed=5),
             kinds=[c.MODEL_KIND_DOT], dot_config={"epochs": 2}, n=10, k=5)
    unsharded = _recommendations(home)

    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None})
    result = publish.with_options(task_runner=runner)(home=str(home.home), kinds=[c.MODEL_KIND_DOT], n=10, k=5,
                                                      shards=3, force=True)

    assert not result["skipped"]
    sharded = _recommendations(home)
    assert len(sharded) == len(unsharded) > 0
    pd.testing.assert_frame_equal(sharded, unsharded, check_exact=False, rtol=1e-5)
