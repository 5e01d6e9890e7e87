"""A run's entry reads the environment once: the data home, the device and the Dask address (flows/guard.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from flows import guard
from tasks.core.errors import ConfigError
from tasks.core.settings import Paths


def a_flow(source=None, home=None, shards: int = 1, dask_address=None, device=None):
    """The parameters the writing flows share."""


SIGNATURE = inspect.signature(a_flow)


@pytest.fixture
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LENSFLOW_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("LENSFLOW_DATA_URI", (tmp_path / "shared").as_uri())
    monkeypatch.setenv("LENSFLOW_DEVICE", "cuda:3")
    monkeypatch.setenv("LENSFLOW_DASK_ADDRESS", "tcp://scheduler:8786")
    return tmp_path


def test_an_entry_run_resolves_home_data_device_and_dask_address_from_the_environment(environment):
    given = guard.resolved(SIGNATURE, (), {"shards": 2}).arguments
    assert given["home"] == Paths(environment / "env-home", environment / "shared")
    assert given["device"] == "cuda:3" and given["dask_address"] == "tcp://scheduler:8786"
    unsharded = guard.resolved(SIGNATURE, (), {"home": "elsewhere"}).arguments   # one shard: no scheduler
    assert unsharded["home"].home == Path("elsewhere").resolve() and unsharded["dask_address"] is None
    explicit = guard.resolved(SIGNATURE, (), {"shards": 2, "device": "cpu", "dask_address": "tcp://h:1"}).arguments
    assert explicit["device"] == "cpu" and explicit["dask_address"] == "tcp://h:1"


def test_a_run_given_a_resolved_home_keeps_every_setting_as_given(environment):
    """The CLI and a parent flow pass a Paths: a subflow never reads the environment again."""
    paths = Paths(environment / "cli-home")
    given = guard.resolved(SIGNATURE, ("src",), {"home": paths, "shards": 2}).arguments
    assert given["home"] is paths and given["home"].data == environment / "cli-home"
    assert given["device"] is None and given["dask_address"] is None and given["source"] == "src"


def test_a_bad_setting_in_the_environment_fails_at_the_entry(environment, monkeypatch):
    monkeypatch.setenv("LENSFLOW_DASK_ADDRESS", "scheduler")
    with pytest.raises(ConfigError, match="tcp://host:8786"):
        guard.resolved(SIGNATURE, (), {"shards": 2})
    monkeypatch.setenv("LENSFLOW_DATA_URI", "s3://bucket/lensflow")
    with pytest.raises(ConfigError, match="not supported"):
        guard.resolved(SIGNATURE, (), {})
    monkeypatch.delenv("LENSFLOW_DATA_URI")
    monkeypatch.setenv("LENSFLOW_MLFLOW_UI_URL", "localhost:5055")   # no scheme: links would not open
    with pytest.raises(ConfigError, match="LENSFLOW_MLFLOW_UI_URL"):
        guard.resolved(SIGNATURE, (), {})
