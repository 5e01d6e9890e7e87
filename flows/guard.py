"""A run's boundary: the environment read once, the servers it needs reached first, and the data location's
writer lock (tasks/core/writer.py) held from before its first step to its end.

The environment is read at the entry only. `lensflow` (flows/cli.py) resolves the data home, the device and the
Dask address once and passes them to the flow: `home` as a `Paths`. A flow run whose `home` arrives as a string
or None (a deployment run, a call from Python) is an entry itself: `one_writer` resolves them there, once, and the
body gets a `Paths`. A flow passes its `Paths`, device and address on to its subflows and steps as they are.

Two ways in. `command(a, paths)` is the CLI's: a writing subcommand checks the MLflow tracking server and the
Prefect API named in the environment (one line and exit 6 when one does not answer), then takes the lock; a
second command on the same data location is refused at once in one line naming the holder, or waits with
$LENSFLOW_LOCK_WAIT seconds. `one_writer` wraps each flow, for runs that do not come through the CLI (deployments,
Python): a top-level flow run takes the lock itself (a deployment run waits for it, up to $LENSFLOW_LOCK_WAIT,
default DEPLOYMENT_WAIT_S), and a deployment run also takes a slot of the Prefect global concurrency limit
WRITER_LIMIT when the server has one (`prefect gcl create lensflow-data-writer --limit 1`: one writer across
hosts). Subflows, and the `train/gpu` runs a pipeline starts, run under their parent's hold. The Dask scheduler is
one of the servers a run needs: reached once, by the entry (the CLI, or `one_writer` for a top-level run).
Imports Prefect only inside functions: the CLI loads this module before Prefect's home is set up.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from contextlib import contextmanager, nullcontext

from tasks.core import environment
from tasks.core import settings
from tasks.core import writer
from tasks.core.settings import Paths
from tasks.publishing import scheduler

WRITERS = ("run", "ingest", "train", "publish", "promote")   # CLI commands that change the data or registry
WRITER_LIMIT = "lensflow-data-writer"                        # Prefect global concurrency limit (optional)
DEPLOYMENT_WAIT_S = 6 * 3600.0


@contextmanager
def command(a, paths: Paths):
    """The servers checked and the writer lock held, for a CLI subcommand that writes; nothing for readers."""
    if a.command not in WRITERS:
        yield
        return
    environment.check_servers(only=(environment.MLFLOW_ENV,) if a.command == "promote" else None)
    say = functools.partial(print, file=sys.stderr, flush=True)
    with writer.hold(paths, f"`lensflow {a.command}`", writer.wait_seconds(0.0), say=say):
        yield


def _prefect_limit(wait_s: float):
    """A slot of WRITER_LIMIT for the block; nothing when the server has no such limit (strict=False)."""
    from prefect.concurrency.sync import concurrency

    return concurrency(WRITER_LIMIT, timeout_seconds=None if wait_s < 0 else wait_s, strict=False)


def resolved(signature: inspect.Signature, args, kwargs) -> inspect.BoundArguments:
    """The flow's arguments with `home` a Paths.

    A `home` that is a Paths was resolved by the caller, with `device` and `dask_address`: all are kept as given.
    Otherwise this run is the entry: home, device and (with shards > 1) the Dask address come from the argument,
    else the environment (tasks/core/settings.py)."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    given = bound.arguments
    if isinstance(given.get("home"), Paths):
        return bound
    given["home"] = settings.paths(given.get("home"))
    settings.mlflow_ui_url()   # links are made at the end of a run: a bad address fails it here, before any work
    if "device" in given:
        given["device"] = settings.device(given["device"])
    if "dask_address" in given:
        given["dask_address"] = settings.dask_address(given["dask_address"]) if given.get("shards", 1) > 1 else None
    return bound


def one_writer(fn):
    """Decorate a flow function (under @flow): its environment resolved once (`resolved`), and a top-level run
    of it holds the data location for its whole run.

    The wrapper keeps fn's signature and module globals (Prefect resolves the string annotations of a flow's
    parameters in its function's globals)."""
    signature, body = inspect.signature(fn), _as_writer

    def wrapper(*args, **kwargs):
        return body(fn, signature, args, kwargs)

    wrapper = types.FunctionType(wrapper.__code__, fn.__globals__, fn.__name__, None, wrapper.__closure__)
    return functools.update_wrapper(wrapper, fn)


def _as_writer(fn, signature: inspect.Signature, args, kwargs):
    from prefect import get_run_logger
    from prefect.context import FlowRunContext

    bound = resolved(signature, args, kwargs)
    args, kwargs = bound.args, bound.kwargs
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is not None and run.parent_task_run_id is not None:
        return fn(*args, **kwargs)   # a subflow or a deployment run started by a flow: under its parent's hold
    paths = bound.arguments["home"]
    if writer.held_here(paths):      # the CLI command that called this flow holds it (and reached the servers)
        return fn(*args, **kwargs)
    environment.check_servers(only=(environment.MLFLOW_ENV,))   # the Prefect API answered: this run exists
    address = bound.arguments.get("dask_address")
    if address:
        scheduler.check(address)     # a bad scheduler fails before the first step
    deployed = run is not None and run.deployment_id is not None
    wait_s = writer.wait_seconds(DEPLOYMENT_WAIT_S if deployed else 0.0)
    what = f"flow run '{run.name}' ({run.id})" if run is not None else f"flow {fn.__name__}"
    with _prefect_limit(wait_s) if deployed else nullcontext(), \
            writer.hold(paths, what, wait_s, say=get_run_logger().warning):
        return fn(*args, **kwargs)
