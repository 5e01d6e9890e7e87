"""Where Prefect's and MLflow's log lines go: `<home>/logs/lensflow.log`, and the terminal only with -v."""

from __future__ import annotations

import logging

from tasks.settings import Paths


def to_file(paths: Paths, verbose: bool = False) -> None:
    """Add a file handler to the root logger once Prefect has configured logging (importing it does)."""
    import prefect  # noqa: F401  - configures logging; a handler added before would be replaced

    paths.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.logs / "lensflow.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s - %(message)s"))
    logging.getLogger().addHandler(handler)
    if not verbose:
        logging.captureWarnings(True)  # library warnings to the log file, not the terminal
