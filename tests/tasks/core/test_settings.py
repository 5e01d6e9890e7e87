"""Where things live: the home, the shared data location, and the deployments' checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import settings
from tasks.core.errors import ConfigError


def test_the_data_lives_in_the_home_unless_a_data_location_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.DATA_ENV, raising=False)
    p = settings.paths(tmp_path / "home")
    assert p.data == p.home and p.lake == p.home / "lake" and p.warehouse.parent == p.home / "warehouse"

    shared = tmp_path / "shared"
    for value in (str(shared), shared.as_uri(), f"file://localhost{shared}"):
        monkeypatch.setenv(settings.DATA_ENV, value)
        p = settings.paths(tmp_path / "home")
        assert p.data == shared and p.data_uri == shared.as_uri(), value
        # the data goes to the shared location; what is each host's own stays in its home
        assert {p.raw, p.lake, p.splits, p.publications, p.warehouse.parent} == {
            shared / name for name in ("raw", "lake", "splits", "publications", "warehouse")}
        assert {p.tmp, p.logs, p.prefect_home, p.mlflow_db.parent} == {
            tmp_path / "home" / name for name in ("tmp", "logs", "prefect", "mlflow")}
    assert settings.Paths(tmp_path / "h") == settings.Paths(tmp_path / "h", data=tmp_path / "h")


@pytest.mark.parametrize("value, words", [
    ("s3://bucket/lensflow", ("s3://", "not supported", "file://")),
    ("file://nas/export/lensflow", ("file://", "'nas'", "mount")),
])
def test_a_data_location_lensflow_cannot_use_is_refused_with_one_line(tmp_path, monkeypatch, value, words):
    monkeypatch.setenv(settings.DATA_ENV, value)
    with pytest.raises(ConfigError) as err:
        settings.paths(tmp_path / "home")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{settings.DATA_ENV}={value}: ")
    assert all(w in message for w in words), message
    assert settings.prepare_environment(tmp_path / "home") == (tmp_path / "home").resolve()  # importing flows never fails


def test_the_pull_step_changes_into_this_workers_checkout(tmp_path, monkeypatch):
    from flows import checkout

    repo = Path(checkout.__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(checkout.REPO_ENV, raising=False)
    assert checkout.use_checkout() == {"directory": str(repo)} and Path.cwd() == repo

    other = tmp_path / "other-checkout"
    (other / "flows").mkdir(parents=True)
    (other / "flows" / "pipeline.py").write_text("")
    monkeypatch.setenv(checkout.REPO_ENV, str(other))
    assert checkout.use_checkout() == {"directory": str(other)} and Path.cwd() == other

    monkeypatch.setenv(checkout.REPO_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        checkout.use_checkout()
    assert "\n" not in str(err.value) and "LENSFLOW_REPO" in str(err.value) and "nowhere" in str(err.value)
