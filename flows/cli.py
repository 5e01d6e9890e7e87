"""`lensflow` command line: each subcommand maps its options onto a flow's parameters.

Imports are lazy so `lensflow --help` is instant and `--home` is applied before Prefect loads.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import signal
import sys

from flows.query import QUERIES
from tasks.core import contract as c
from tasks.core import settings
from tasks.core.errors import ConfigError


FLOW_COMMANDS = ("run", "ingest", "train", "publish")


# Exit codes of user errors (argparse itself exits 2 on a bad option); anything else is a bug: exit 1
# with its traceback. Matched by class name so the CLI imports nothing heavy to classify an error.
EXIT_CODES = {
    "ConfigError": 2, "ArgumentTypeError": 2,
    "InputError": 3, "ChecksumMismatch": 3,
    "NotFound": 4, "FileNotFoundError": 4, "NotADirectoryError": 4, "IsADirectoryError": 4,
    "PermissionError": 5, "ReadOnlyFileSystem": 5,
    "SourceUnavailable": 6, "DeviceUnavailable": 6, "ClusterUnavailable": 6, "CannotListen": 6,
    "DataLocationBusy": 6, "DiskFull": 6, "ServerUnavailable": 6,
    "PublicationCheckError": 7, "CheckFailed": 7, "NarrowingError": 7,
}


def exit_code(exc: BaseException) -> int | None:
    """The exit code of a user error (bad input, path, option, unknown id, missing device), else None."""
    if type(exc) is LookupError:  # "no champion yet" and the like; never KeyError/IndexError (bugs)
        return 4
    if isinstance(exc, OSError) and exc.errno == 30:  # EROFS: a read-only data home
        return 5
    for cls in type(exc).__mro__:
        if cls.__name__ in EXIT_CODES:
            return EXIT_CODES[cls.__name__]
    return None


def one_line(exc: BaseException) -> str:
    """What went wrong, on one line: an OSError names its file."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line like every other user error (the usage is a `--help` away); exit 2."""

    def error(self, message: str):
        near = []
        if m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
            near = difflib.get_close_matches(m[1], re.findall(r"'([^']*)'", m[2]), 1)
        elif m := re.match(r"unrecognized arguments: (--?[\w-]+)", message):
            near = difflib.get_close_matches(m[1].lstrip("-"), self._options(), 1)
            near = [f"--{o}" for o in near]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        self.exit(2, f"lensflow: {' '.join(message.split())}{hint} (`{self.prog} --help` lists the options)\n")

    def _options(self) -> set[str]:
        """Every long option name (without --) of this parser and the subcommands below it."""
        names = set()
        for action in self._actions:
            names |= {o[2:] for o in action.option_strings if o.startswith("--")}
            subcommands = action.choices.values() if isinstance(action.choices, dict) else ()
            names |= {o for sub in subcommands if isinstance(sub, OneLineParser) for o in sub._options()}
        return names


def _port(value: str) -> int:
    n = _positive_int(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535, got {value!r}")
    return n


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="data home (default: $LENSFLOW_HOME or ./.lensflow)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show Prefect's and MLflow's own log lines on the terminal (always in <home>/logs)")


def _refuse_narrowing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refuse-narrowing", action="store_true",
                   help="refuse a publication whose reach drops or concentration rises past the thresholds "
                        "(docs/publication_health.md); the live one stays")


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (default: $LENSFLOW_DEVICE, else CUDA when present)")


def _dask_address(value: str) -> str:
    from tasks.core.errors import ConfigError

    try:
        settings.parse_dask_address(value)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value.strip()


def _shards(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=_positive_int, default=1,
                   help="score users in N user-id ranges as parallel tasks (default 1: in one go)")
    p.add_argument("--dask-address", type=_dask_address, default=None,
                   help="with --shards: the Dask scheduler that runs them, tcp://host:8786 "
                        "(default: $LENSFLOW_DASK_ADDRESS, else threads in this process)")


def _kinds(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in c.MODEL_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"model kinds are {', '.join(c.MODEL_KINDS)}; got {value!r}")
    return kinds


def _json_dict(value: str) -> dict:
    try:
        out = json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from e
    if not isinstance(out, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"epochs\": 3}'")
    return out


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="random", choices=("random", "user_fraction", "temporal", "leave_last_k"),
                   help="split strategy (default: random)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--leave-k", type=int, default=1, help="k for leave_last_k")
    p.add_argument("--cutoff", type=int, default=None,
                   help="temporal: unix seconds (default: the test-fraction quantile of the rating times)")
    p.add_argument("--seed", type=int, default=42)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="lensflow", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: ingest, split, train both models, register, publish")
    _common(p)
    p.add_argument("--source", help="MovieLens folder or zip (default: $LENSFLOW_SOURCE or the GroupLens download)")
    _split_options(p)
    p.add_argument("--kinds", type=_kinds, default=None, help="comma-separated model kinds (default: both)")
    p.add_argument("--dot-config", type=_json_dict, default=None, help=f"JSON overrides for the {c.MODEL_KIND_DOT} config")
    p.add_argument("--nn-config", type=_json_dict, default=None, help=f"JSON overrides for the {c.MODEL_KIND_NN} config")
    p.add_argument("--promotion-metric", action="append", default=None, metavar="KIND=METRIC",
                   help=f"what moves a kind's `champion` (repeatable; default {c.MODEL_KIND_DOT}=ndcg_at_10, "
                        f"{c.MODEL_KIND_NN}=rmse)")
    p.add_argument("-n", "--top-n", type=_positive_int, default=50, help="recommendations per user (default 50)")
    p.add_argument("-k", "--similar-k", type=_positive_int, default=20, help="similar items per item (default 20)")
    p.add_argument("--retain", type=_positive_int, default=5, help="publications kept on disk (default 5)")
    p.add_argument("--force", action="store_true", help="retrain and republish even when nothing changed")
    _refuse_narrowing(p)
    _device(p)
    _shards(p)

    p = sub.add_parser("ingest", help="acquire, validate and load the MovieLens files")
    _common(p)
    p.add_argument("--source", help="MovieLens folder or zip (default: $LENSFLOW_SOURCE or download)")

    p = sub.add_parser("train", help="train, evaluate and register one model kind on the current lake")
    _common(p)
    p.add_argument("--kind", default=c.MODEL_KIND_DOT, choices=c.MODEL_KINDS)
    _split_options(p)
    p.add_argument("--split-id", default=None, help="train on this stored split instead of making one")
    p.add_argument("--config", type=_json_dict, default=None, help="JSON model config overrides")
    p.add_argument("--promotion-metric", default=None,
                   help=f"metric that moves `champion` (default: the kind's job: ndcg_at_10 for {c.MODEL_KIND_DOT}, "
                        f"rmse for {c.MODEL_KIND_NN})")
    p.add_argument("--top-k", type=_positive_int, default=10, help="k of the ranking metrics (default 10)")
    p.add_argument("--force", action="store_true", help="train even if an identical training is registered")
    p.add_argument("--no-registry", dest="to_registry", action="store_false", help="train and evaluate only")
    _device(p)

    p = sub.add_parser("publish", help="publish recommendations and similar items from registered models")
    _common(p)
    p.add_argument("--model", default=None, choices=c.MODEL_KINDS,
                   help="model kind for recommendations (default: best champion)")
    p.add_argument("--version", default="serving", help="alias or version number (default: serving = each champion's "
                   "serving fit on every rating where one exists, else the champion)")
    p.add_argument("-n", "--top-n", type=_positive_int, default=50)
    p.add_argument("-k", "--similar-k", type=_positive_int, default=20)
    p.add_argument("--retain", type=_positive_int, default=5)
    _refuse_narrowing(p)
    _device(p)
    _shards(p)

    p = sub.add_parser("promote", help="operator override: make a version the champion")
    _common(p)
    p.add_argument("kind", choices=c.MODEL_KINDS)
    p.add_argument("version")
    p.add_argument("--reason", required=True, help="recorded on the version")

    p = sub.add_parser("query", help="run a consumer query on the published tables")
    _common(p)
    p.add_argument("question", choices=(*QUERIES, "sql"))
    p.add_argument("--user", type=int)
    p.add_argument("--item", type=int)
    p.add_argument("--limit", type=_positive_int, default=None, help="rows shown (default 10; health: all)")
    p.add_argument("--sql", help="with 'sql': a read-only statement to run")

    sub.add_parser("synth", help="write a synthetic data set in the MovieLens 100k formats (synth --help)")

    p = sub.add_parser("mlflow-ui", help="start `mlflow server` on the data home's store (127.0.0.1)")
    _common(p)
    p.add_argument("--port", type=_port, default=None,
                   help=f"default: the port of ${settings.MLFLOW_UI_ENV}, the address links point at (5000)")
    p.add_argument("--host", default="127.0.0.1")

    p = sub.add_parser("where", help="print the data home's locations")
    _common(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `lensflow query ... | head` ends quietly, like other CLI tools
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv_given, argv = argv, sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["synth"]:  # its own options (argparse cannot pass --flags through a subparser)
        from tasks.sources import synthetic

        return synthetic.main(argv[1:], prog="lensflow synth", parser=OneLineParser) or 0
    a = build_parser().parse_args(argv)
    try:
        paths = settings.apply_environment(a.home)
    except ConfigError as exc:  # a bad $LENSFLOW_DATA_URI: one line, like any other setting
        print(f"lensflow: {exc}", file=sys.stderr)
        return EXIT_CODES["ConfigError"]
    if not a.verbose:  # MLflow's INFO lines (store creation, artifact downloads) stay off the terminal
        os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        if hasattr(a, "device"):   # read once, here ($LENSFLOW_DEVICE unless --device): the flows take it as given
            a.device = settings.device(a.device)
        if a.command in FLOW_COMMANDS:  # only commands that run a flow write Prefect's home and logs
            if getattr(a, "device", None):  # a missing GPU fails now, not after the ingest
                from models.training_loop import pick_device

                pick_device(a.device)
            settings.prepare_prefect_home()
            if not a.verbose:  # Prefect's own lines go to <home>/logs/lensflow.log (flows/logs.py)
                os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
                os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL", "CRITICAL")   # its internal errors
        from flows import commands, guard

        with guard.command(a, paths):   # servers reached, then one writer per data location
            return getattr(commands, a.command.replace("-", "_"))(a, paths) or 0
    except Exception as exc:  # noqa: BLE001 - user errors become one line; bugs keep their traceback
        from tasks.core import environment

        fault = environment.classify(exc, paths)   # a full disk or a server gone, however it was wrapped
        exc, code = (fault, EXIT_CODES[type(fault).__name__]) if fault is not None else (exc, exit_code(exc))
        if code is None or a.debug:
            raise
        hint = "" if a.home is None else f" (data home {paths.home})"
        print(f"lensflow: {one_line(exc)}{hint}", file=sys.stderr, flush=True)
        if fault is not None and argv_given is None:   # the program, not a caller: the line is the last word
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)   # (DuckDB's leak report after a fatal write error)
        return code


if __name__ == "__main__":
    sys.exit(main())
