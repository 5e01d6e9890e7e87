"""Around every run that changes the data: the servers it needs are reached first, and it holds the data
location's writer lock (tasks/core/writer.py) from before its first step to its end.

Two ways in. `command(a, paths)` is the CLI's: a writing subcommand checks the MLflow tracking server and the
Prefect API named in the environment (one line and exit 6 when one does not answer), then takes the lock; a
second command on the same data location is refused at once in one line naming the holder, or waits with
$LENSFLOW_LOCK_WAIT seconds. `one_writer` wraps each flow, for runs that do not come through the CLI (deployments,
Python): a top-level flow run takes the lock itself (a deployment run waits for it, up to $LENSFLOW_LOCK_WAIT,
default DEPLOYMENT_WAIT_S), and a deployment run also takes a slot of the Prefect global concurrency limit
WRITER_LIMIT when the server has one (`prefect gcl create lensflow-data-writer --limit 1`: one writer across
hosts). Subflows, and the `train/gpu` runs a pipeline starts, run under their parent's hold.
Imports Prefect only inside functions: the CLI loads this module before Prefect's home is set up.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from contextlib import contextmanager, nullcontext

from tasks.core import environment
from tasks.core import writer
from tasks.core.settings import Paths

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


def one_writer(fn):
    """Decorate a flow function (under @flow): a top-level run of it holds the data location for its whole run.

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

    from tasks.core.settings import paths as resolve_paths

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is not None and run.parent_task_run_id is not None:
        return fn(*args, **kwargs)   # a subflow or a deployment run started by a flow: under its parent's hold
    paths = resolve_paths(signature.bind(*args, **kwargs).arguments.get("home"))
    if writer.held_here(paths):      # the CLI command that called this flow holds it
        return fn(*args, **kwargs)
    environment.check_servers(only=(environment.MLFLOW_ENV,))   # the Prefect API answered: this run exists
    deployed = run is not None and run.deployment_id is not None
    wait_s = writer.wait_seconds(DEPLOYMENT_WAIT_S if deployed else 0.0)
    what = f"flow run '{run.name}' ({run.id})" if run is not None else f"flow {fn.__name__}"
    with _prefect_limit(wait_s) if deployed else nullcontext(), \
            writer.hold(paths, what, wait_s, say=get_run_logger().warning):
        return fn(*args, **kwargs)
