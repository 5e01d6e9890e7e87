"""The Prefect test harness starts and runs a flow against the temporary API."""

from prefect import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def doubler(x: int) -> int:
    return double(x)


def test_flow_runs_against_temporary_api(prefect_api):
    assert doubler(21) == 42
