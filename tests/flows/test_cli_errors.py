"""User errors are one line on stderr with a distinct exit code; nothing is retried or changed; --debug shows why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, free_port


def lensflow(*args: str, home, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process, as a user types it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "flows", *args, "--home", str(home)], cwd=REPO_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lensflow: "), proc.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("args,code,words", [
    (("ingest", "--source", "/nonexistent/ml-100k"), 6, ("/nonexistent/ml-100k", "does not exist", "--source")),
    (("run", "--source", "{src}", "--dot-config", '{"epoch": 3}'), 2, ("'epoch'", "did you mean 'epochs'")),
    (("train", "--config", '{"n_factor": 8}'), 2, ("did you mean 'n_factors'",)),
    (("train", "--device", "cuda"), 6, ("cuda", "--device cpu")),
    (("promote", "dot_bias", "7", "--reason", "try"), 4, ("no version '7'", "lensflow-dot_bias")),
    # an unknown version is refused by the CLI, before the publish flow (and Prefect's server) starts
    (("publish", "--version", "42"), 4, ("no version '42'", "lensflow-dot_bias", "lensflow-embedding_nn")),
    (("publish", "--shards", "2", "--dask-address", "tcp://127.0.0.1:{port}"), 6,
     ("Dask scheduler tcp://127.0.0.1:", "nothing answers")),
    (("run", "--source", "{src}", "--shards", "2", "--dask-address", "tcp://nowhere.invalid:8786"), 6,
     ("nowhere.invalid", "does not resolve")),
    (("publish", "--dask-address", "tcp://127.0.0.1:8786"), 2, ("--shards 2 or more",)),
    (("run", "--source", "{src}", "--dot-config", '{"epochs": -1}'), 2, ("epochs must be a whole number >= 1",)),
    (("run", "--nn-config", '{"lr": 0}'), 2, ("lr must be a number > 0",)),   # refused before any download
    (("run", "--source", "{src}", "--test-fraction", "1.5"), 2, ("test_fraction: must be in (0, 1), got 1.5",)),
    (("train", "--split", "leave_last_k", "--leave-k", "0"), 2, ("k: must be an integer >= 1, got 0",)),
    (("query", "because", "--user", "1", "--item", "99999"), 2, ("query because does not use --item", "takes --user")),
    (("query", "most-recommended", "--user", "3"), 2, ("does not use --user", "none of --user, --item, --sql")),
    (("query", "sql", "--sql", "select 1", "--user", "2"), 2, ("query sql does not use --user",)),
])
def test_user_errors_are_one_line_and_change_nothing(tmp_path, synthetic_small, args, code, words):
    home = tmp_path / "home"
    args = tuple(a.replace("{src}", str(synthetic_small)).replace("{port}", str(free_port())) for a in args)
    if args[0] == "train" and "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU: asking for CUDA is not an error here")
    line = one_line_error(lensflow(*args, home=home), code, *words)
    assert str(home) in line  # the hint names the data home it was pointed at
    # refused before anything ran: no lake, no warehouse, no publication in the home
    for folder in ("lake", "warehouse", "publications", "splits"):
        assert not (home / folder).exists(), folder


def test_debug_shows_the_traceback(tmp_path):
    proc = lensflow("ingest", "--source", "/nonexistent/ml-100k", "--debug", home=tmp_path / "home")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "SourceUnavailable" in proc.stderr


@pytest.mark.parametrize("args,words", [
    (("query", "top10", "--user", "1", "--limit", "-3"), ("must be a whole number >= 1, got '-3'",)),
    (("query", "top10", "--user", "abc"), ("invalid int value: 'abc'", "`lensflow query --help`")),
    (("run", "--split", "temporl"), ("invalid choice: 'temporl'", "did you mean 'temporal'?", "`lensflow run --help`")),
    (("rnu",), ("invalid choice: 'rnu'", "did you mean 'run'?")),
    (("run", "--froce"), ("unrecognized arguments: --froce", "did you mean '--force'?")),
    (("query", "simlar", "--item", "1"), ("did you mean 'similar'?",)),
    (("publish", "--model", "nn"), ("invalid choice: 'nn'",)),
    (("mlflow-ui", "--port", "99999"), ("a TCP port is 1..65535, got '99999'",)),
    (("synth", "--out", "{out}", "--usres", "5"), ("did you mean '--users'?", "`lensflow synth --help`")),
])
def test_typos_and_bad_option_values_are_one_line_with_a_suggestion(tmp_path, args, words):
    """argparse's refusals read like every other user error: one line (no usage dump), exit 2, nothing written."""
    home, out = tmp_path / "home", tmp_path / "synthetic"
    one_line_error(lensflow(*(a.replace("{out}", str(out)) for a in args), home=home), 2, *words)
    assert not home.exists() and not out.exists()


def test_a_read_only_query_writes_nothing_where_it_runs(tmp_path):
    """Importing and running the CLI leaves no ./.lensflow behind in the current directory."""
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("LENSFLOW_HOME", None)
    env.pop("PREFECT_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "flows", "where", "--home", str(tmp_path / "home")], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == [] and not (tmp_path / "home").exists()


def test_importing_a_flow_from_python_makes_the_prefect_home_it_will_need(tmp_path):
    """Prefect makes PREFECT_HOME as it is imported, but not its parents: without them a flow called from Python
    waited out the temporary API's startup timeout and failed. A flow module makes <home>/prefect first."""
    cwd = tmp_path / "notebook"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for name in ("LENSFLOW_HOME", "PREFECT_HOME", "PREFECT_API_URL"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", "import os, flows.pipeline; print(os.environ['PREFECT_HOME'])"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(cwd / ".lensflow" / "prefect") and (cwd / ".lensflow" / "prefect").is_dir()
    assert "Failed to create the Prefect home directory" not in proc.stderr, proc.stderr[-2000:]


def test_a_data_location_on_object_storage_is_one_line_and_exit_2(tmp_path):
    proc = lensflow("where", home=tmp_path / "home", env={"LENSFLOW_DATA_URI": "s3://bucket/lensflow"})
    one_line_error(proc, 2, "LENSFLOW_DATA_URI=s3://bucket/lensflow", "not supported")
    assert not (tmp_path / "home").exists()


def test_where_names_the_shared_data_location(tmp_path):
    shared = tmp_path / "shared"
    proc = lensflow("where", home=tmp_path / "home", env={"LENSFLOW_DATA_URI": shared.as_uri()})
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["data"] == shared.as_uri() and shown["lake"] == str(shared / "lake")
    assert shown["home"] == str(tmp_path / "home")


def test_mlflow_ui_on_a_taken_port_is_one_line_and_exit_6_not_a_server_that_exits_0(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(lensflow("mlflow-ui", "--port", str(port), home=tmp_path / "home"), 6,
                              f"cannot listen on 127.0.0.1:{port}", "pick another with --port")
    assert "Address already in use" in line
