"""`lensflow` command line: each subcommand maps its options onto a flow's parameters.

Imports are lazy so `lensflow --help` is instant and `--home` is applied before Prefect loads.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from tasks import settings


FLOW_COMMANDS = ("run", "ingest", "train", "publish")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="data home (default: $LENSFLOW_HOME or ./.lensflow)")


def _kinds(value: str) -> list[str]:
    from tasks import contract as c

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
    ap = argparse.ArgumentParser(prog="lensflow", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: ingest, split, train both models, register, publish")
    _common(p)
    p.add_argument("--source", help="MovieLens folder or zip (default: $LENSFLOW_SOURCE or the GroupLens download)")
    _split_options(p)
    p.add_argument("--kinds", type=_kinds, default=None, help="comma-separated model kinds (default: both)")
    p.add_argument("--dot-config", type=_json_dict, default=None, help="JSON overrides for the dot_bias config")
    p.add_argument("--nn-config", type=_json_dict, default=None, help="JSON overrides for the embedding_nn config")
    p.add_argument("--promotion-metric", default=None, help="metric deciding the champion (default: ndcg@10)")
    p.add_argument("-n", "--top-n", type=int, default=50, help="recommendations per user (default 50)")
    p.add_argument("-k", "--similar-k", type=int, default=20, help="similar items per item (default 20)")
    p.add_argument("--retain", type=int, default=5, help="publications kept on disk (default 5)")
    p.add_argument("--force", action="store_true", help="retrain and republish even when nothing changed")

    p = sub.add_parser("ingest", help="acquire, validate and load the MovieLens files")
    _common(p)
    p.add_argument("--source", help="MovieLens folder or zip (default: $LENSFLOW_SOURCE or download)")

    p = sub.add_parser("train", help="train, evaluate and register one model kind on the current lake")
    _common(p)
    p.add_argument("--kind", default="dot_bias", choices=("dot_bias", "embedding_nn"))
    _split_options(p)
    p.add_argument("--split-id", default=None, help="train on this stored split instead of making one")
    p.add_argument("--config", type=_json_dict, default=None, help="JSON model config overrides")
    p.add_argument("--promotion-metric", default=None, help="metric that moves `champion` (default: ndcg@10)")
    p.add_argument("--top-k", type=int, default=10, help="k of the ranking metrics (default 10)")
    p.add_argument("--force", action="store_true", help="train even if an identical training is registered")
    p.add_argument("--no-registry", dest="to_registry", action="store_false", help="train and evaluate only")

    p = sub.add_parser("publish", help="publish recommendations and similar items from registered models")
    _common(p)
    p.add_argument("--model", default=None, help="model kind for recommendations (default: best champion)")
    p.add_argument("--version", default="champion", help="alias or version number (default: champion)")
    p.add_argument("-n", "--top-n", type=int, default=50)
    p.add_argument("-k", "--similar-k", type=int, default=20)
    p.add_argument("--retain", type=int, default=5)

    p = sub.add_parser("promote", help="operator override: make a version the champion")
    _common(p)
    p.add_argument("kind", choices=("dot_bias", "embedding_nn"))
    p.add_argument("version")
    p.add_argument("--reason", required=True, help="recorded on the version")

    p = sub.add_parser("query", help="run a consumer query on the published tables")
    _common(p)
    p.add_argument("question", choices=("top10", "similar", "because", "most-recommended", "coverage",
                                        "publications", "sql"))
    p.add_argument("--user", type=int)
    p.add_argument("--item", type=int)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--sql", help="with 'sql': a read-only statement to run")

    sub.add_parser("synth", help="write a synthetic data set in the MovieLens 100k formats (synth --help)")

    p = sub.add_parser("mlflow-ui", help="start `mlflow server` on the data home's store (127.0.0.1)")
    _common(p)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")

    p = sub.add_parser("where", help="print the data home's locations")
    _common(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `lensflow query ... | head` ends quietly, like other CLI tools
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["synth"]:  # its own options (argparse cannot pass --flags through a subparser)
        from tasks import synthetic

        return synthetic.main(argv[1:]) or 0
    a = build_parser().parse_args(argv)
    paths = settings.apply_environment(a.home)
    if a.command in FLOW_COMMANDS:  # only commands that run a flow need Prefect's home on disk
        settings.prepare_prefect_home()
    from flows import commands

    return getattr(commands, a.command.replace("-", "_"))(a, paths) or 0


if __name__ == "__main__":
    sys.exit(main())
